"""What a reader needs to know besides the file: the model's sequence order and the infer settings."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from mri_seg.config.schema import DicomConfig
from mri_seg.io.orientation import AUTO, parse_axis
from mri_seg.io.sequences import TRAINING_SEQUENCES, model_sequences, parse_names

DEFAULT_VOLUME_SEQUENCES = TRAINING_SEQUENCES  # infer.sequences: a 4D volume's last axis (Kaggle/OpenCV order)
DEFAULT_NNUNET_CHANNELS = ("flair", "pre", "post", "t2")  # infer.nnunet_channels: the MSD / nnU-Net BrainTumour order


@dataclass(frozen=True)
class DicomSettings:
    """``infer.dicom``: series rules (``"sequence: regex"``, tried in order) and the acquisition fallbacks."""

    series_rules: tuple[str, ...] = ()
    flair_min_inversion_ms: float = 1500.0
    t1_max_repetition_ms: float = 1000.0
    tie_break: str = "most_slices"
    gap_tolerance: float = 0.1

    @classmethod
    def from_config(cls, dicom_cfg) -> "DicomSettings":
        return cls(tuple(dicom_cfg.series_rules), float(dicom_cfg.flair_min_inversion_ms),
                   float(dicom_cfg.t1_max_repetition_ms), str(dicom_cfg.tie_break), float(dicom_cfg.gap_tolerance))


def _default_dicom() -> DicomSettings:
    return DicomSettings.from_config(DicomConfig())


@dataclass(frozen=True)
class ReadOptions:
    """``model``: the checkpoint's input order; ``nifti_axis``: ``auto`` or 0/1/2;
    ``volume_sequences``: a 4D NIfTI's last axis, by name; ``nnunet_channels``: the meaning
    of ``<case>_0000``, ``_0001``... (index = channel number)."""

    model: tuple[str, ...] = TRAINING_SEQUENCES
    nifti_axis: int | str = AUTO
    volume_sequences: tuple[str, ...] = DEFAULT_VOLUME_SEQUENCES
    nnunet_channels: tuple[str, ...] = DEFAULT_NNUNET_CHANNELS
    dicom: DicomSettings = field(default_factory=_default_dicom)

    @classmethod
    def from_settings(
        cls,
        model: Sequence[str] | None = None,
        nifti_axis: int | str = AUTO,
        sequences: Sequence[str] = DEFAULT_VOLUME_SEQUENCES,
        nnunet_channels: Sequence[str] = DEFAULT_NNUNET_CHANNELS,
        dicom: DicomSettings | None = None,
    ) -> "ReadOptions":
        """Validated options; ValueError naming the config key at fault."""
        return cls(
            model=model_sequences(model),
            nifti_axis=parse_axis(nifti_axis),
            volume_sequences=parse_names(sequences, "infer.sequences"),
            nnunet_channels=parse_names(nnunet_channels, "infer.nnunet_channels"),
            dicom=dicom or _default_dicom(),
        )

    @classmethod
    def from_config(cls, infer_cfg, model: Sequence[str] | None = None) -> "ReadOptions":
        """From an :class:`mri_seg.config.InferConfig` and a checkpoint's recorded sequences."""
        dicom = DicomSettings.from_config(infer_cfg.dicom) if hasattr(infer_cfg, "dicom") else None
        return cls.from_settings(model, infer_cfg.nifti_axis, infer_cfg.sequences, infer_cfg.nnunet_channels, dicom)


def as_options(options: "ReadOptions | int | str | None") -> ReadOptions:
    """Accept the older ``nifti_axis`` argument (an int or ``auto``) where options are expected."""
    if options is None:
        return ReadOptions()
    if isinstance(options, ReadOptions):
        return options
    return ReadOptions(nifti_axis=parse_axis(options))
