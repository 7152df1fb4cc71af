"""What a reader needs to know besides the file: the model's sequence order and the infer settings."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from mri_seg.io.orientation import AUTO, parse_axis
from mri_seg.io.sequences import TRAINING_SEQUENCES, model_sequences, parse_names

DEFAULT_VOLUME_SEQUENCES = TRAINING_SEQUENCES  # infer.sequences: a 4D volume's last axis (Kaggle/OpenCV order)
DEFAULT_NNUNET_CHANNELS = ("flair", "pre", "post", "t2")  # infer.nnunet_channels: the MSD / nnU-Net BrainTumour order


@dataclass(frozen=True)
class ReadOptions:
    """``model``: the checkpoint's input order; ``nifti_axis``: ``auto`` or 0/1/2;
    ``volume_sequences``: a 4D NIfTI's last axis, by name; ``nnunet_channels``: the meaning
    of ``<case>_0000``, ``_0001``... (index = channel number)."""

    model: tuple[str, ...] = TRAINING_SEQUENCES
    nifti_axis: int | str = AUTO
    volume_sequences: tuple[str, ...] = DEFAULT_VOLUME_SEQUENCES
    nnunet_channels: tuple[str, ...] = DEFAULT_NNUNET_CHANNELS

    @classmethod
    def from_settings(
        cls,
        model: Sequence[str] | None = None,
        nifti_axis: int | str = AUTO,
        sequences: Sequence[str] = DEFAULT_VOLUME_SEQUENCES,
        nnunet_channels: Sequence[str] = DEFAULT_NNUNET_CHANNELS,
    ) -> "ReadOptions":
        """Validated options; ValueError naming the config key at fault."""
        return cls(
            model=model_sequences(model),
            nifti_axis=parse_axis(nifti_axis),
            volume_sequences=parse_names(sequences, "infer.sequences"),
            nnunet_channels=parse_names(nnunet_channels, "infer.nnunet_channels"),
        )

    @classmethod
    def from_config(cls, infer_cfg, model: Sequence[str] | None = None) -> "ReadOptions":
        """From an :class:`mri_seg.config.InferConfig` and a checkpoint's recorded sequences."""
        return cls.from_settings(model, infer_cfg.nifti_axis, infer_cfg.sequences, infer_cfg.nnunet_channels)


def as_options(options: "ReadOptions | int | str | None") -> ReadOptions:
    """Accept the older ``nifti_axis`` argument (an int or ``auto``) where options are expected."""
    if options is None:
        return ReadOptions()
    if isinstance(options, ReadOptions):
        return options
    return ReadOptions(nifti_axis=parse_axis(options))
