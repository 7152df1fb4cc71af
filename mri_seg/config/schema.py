"""Every config key, declared once: type (the annotation), default, rule and a one-line doc.

Each section is a dataclass, each key one field declared with :func:`setting`; the check
(:func:`mri_seg.config.config_violations`) and the reference page ``docs/reference/config.md``
(:mod:`mri_seg.config.reference`) read these declarations, so a new key is one line here
(a test fails for a key without a rule or a doc). Checks that involve several keys are
:data:`CROSS_RULES`. Lists of names that other modules implement come from
:mod:`mri_seg.config.names`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mri_seg.config.names import (
    ARCHITECTURES,
    BACKENDS,
    BACKGROUNDS,
    BLENDS,
    COMPONENT_RULES,
    DEVICES,
    INPUT_SEQUENCES,
    LOSSES,
    NORMALISATION_METHODS,
    NORMS,
    SCHEDULERS,
    SHIP_CHOICES,
    SPLITS,
)
from mri_seg.config.rules import (
    COUNT,
    COUNT_OR_ZERO,
    FRACTION_BELOW_ONE,
    NON_NEGATIVE,
    POSITIVE,
    PROBABILITY,
    SEED,
    CrossRule,
    Either,
    Flag,
    ListOf,
    OneOf,
    Range,
    SequenceNames,
    SeriesRules,
    setting,
)


@dataclass
class DataConfig:
    """How slices are read and fed to the model (training; stored in the checkpoint for inference)."""

    image_size: int = setting(256, Range(8, 65536, integer=True), "native slice size of the Kaggle dataset")
    scale: float = setting(
        1.0, Range(0.0, 8.0, lo_open=True), "resampling factor applied to slices before the model (0.5: 256 -> 128)"
    )
    normalisation: str = setting(
        "zscore_nonzero", OneOf(NORMALISATION_METHODS),
        "z-score of each channel over its non-zero pixels: zscore_nonzero per slice, zscore_volume per patient "
        "volume; zscore_head: per patient volume over a head mask derived from FLAIR, 0 outside it "
        "(mri_seg/preprocess.py)",
    )  # fmt: skip
    context_slices: int = setting(
        0, Range(0, 16, integer=True),
        "2.5D: k neighbours each side as extra channels (0 = 2D); model.in_channels = C*(2k+1)",
    )  # fmt: skip
    cache_in_memory: bool = setting(True, Flag(), "keep the decoded slices in memory (changes speed, not results)")
    num_workers: int = setting(2, COUNT_OR_ZERO, "data-loader worker processes (0: load in the main process)")


@dataclass
class PrepareConfig:
    """The prepare stage: the dataset folder -> RUN/manifest.csv."""

    workers: int = setting(2, COUNT_OR_ZERO, "reader threads (changes speed, not results)")
    strict: bool = setting(
        False, Flag(), "fail on any defect: any error or warning found fails the stage (the report is still written)"
    )


@dataclass
class SplitConfig:
    """The split stage: patients -> train/val/test (and cross-validation folds), stratified."""

    seed: int = setting(42, SEED, "random seed of the patient split")
    train: float = setting(0.70, PROBABILITY, "fraction of patients for training (the three fractions sum to 1)")
    val: float = setting(0.15, PROBABILITY, "fraction of patients for validation (model selection)")
    test: float = setting(0.15, PROBABILITY, "fraction of patients held out for evaluation")
    n_folds: int = setting(
        0, Either((OneOf((0,)), Range(2, integer=True))),
        "> 1: also assign a cross-validation `fold` to train+val patients (0: no folds)",
    )  # fmt: skip
    tumour_bins: int = setting(3, COUNT, "quantile bins of tumour pixel total used for stratification")


@dataclass
class AffineConfig:
    """Random affine transform (training augmentation)."""

    p: float = setting(0.5, PROBABILITY, "probability of applying it to a slice")
    scale: list[float] = setting([0.9, 1.1], ListOf(POSITIVE, 2, 2, ordered=True), "zoom factor range")
    rotate: float = setting(15.0, Range(0.0, 180.0), "rotation range in degrees, symmetric")
    translate: float = setting(0.0625, FRACTION_BELOW_ONE, "shift range as a fraction of image size, symmetric")


@dataclass
class ElasticConfig:
    """Random elastic deformation (training augmentation)."""

    p: float = setting(0.2, PROBABILITY, "probability of applying it to a slice")
    alpha: float = setting(
        30.0,
        NON_NEGATIVE,
        "scale of the displacement field, not pixels: albumentations multiplies Gaussian-smoothed noise "
        "in [-1, 1] by it; mean displacement about 0.3 px at 30 / sigma 6, 2.5 px at 300 / sigma 10, "
        "4.3 px at 600 / sigma 12 (tests/unit/data/test_augment.py)",
    )
    sigma: float = setting(6.0, POSITIVE, "smoothness of the displacement field (Gaussian sigma, pixels)")


@dataclass
class IntensityConfig:
    """Random brightness, contrast, gamma and noise (training augmentation)."""

    p: float = setting(0.3, PROBABILITY, "probability of the brightness/contrast and gamma changes")
    brightness: float = setting(0.1, PROBABILITY, "brightness change range, symmetric")
    contrast: float = setting(0.1, PROBABILITY, "contrast change range, symmetric")
    gamma: list[float] = setting(
        [80.0, 120.0], ListOf(POSITIVE, 2, 2, ordered=True), "gamma range in albumentations' percent units"
    )
    noise_std: list[float] = setting(
        [0.0, 0.03], ListOf(PROBABILITY, 2, 2, ordered=True), "Gaussian noise std range, as a fraction of max value"
    )
    noise_p: float = setting(0.2, PROBABILITY, "probability of adding noise")


@dataclass
class LesionConfig:
    """In-tumour appearance: a dark, cyst-like core inside a bright rim (the tumours the model misses)."""

    p: float = setting(0.0, PROBABILITY, "probability of darkening the core of a slice's tumour (0: off)")
    darken: list[float] = setting(
        [0.25, 0.7], ListOf(PROBABILITY, 2, 2, ordered=True), "range of the factor the core's intensities are multiplied by"
    )
    core: list[float] = setting(
        [0.2, 0.6], ListOf(PROBABILITY, 2, 2, ordered=True),
        "range of the core's extent: pixels deeper than this fraction of the tumour's largest depth",
    )  # fmt: skip
    min_pixels: int = setting(
        40, COUNT,
        "only a slice whose tumour has at least this many pixels (at the training size, after data.scale) gets a "
        "dark core: a larger value keeps small tumours as they are and gives the cores to the large ones",
    )  # fmt: skip


@dataclass
class LesionT1Config:
    """In-tumour T1 appearance: pre- and post-contrast rescaled inside the tumour, FLAIR unchanged."""

    p: float = setting(
        0.0, PROBABILITY, "probability of rescaling pre- and post-contrast inside a slice's tumour (0: off)"
    )
    scale: list[float] = setting(
        [0.5, 2.0], ListOf(Range(0.05, 20.0), 2, 2, ordered=True),
        "range of each T1 sequence's factor inside the tumour (log-uniform, drawn per sequence: "
        "enhancing, dark or unchanged)",
    )  # fmt: skip
    patchy: float = setting(
        0.5, PROBABILITY, "probability that only a random smooth part of the tumour changes (else all of it)"
    )


@dataclass
class LesionFaintConfig:
    """A faint tumour: FLAIR inside the tumour faded towards the brain around it, its texture kept."""

    p: float = setting(0.0, PROBABILITY, "probability of fading FLAIR inside a slice's tumour (0: off)")
    fade: list[float] = setting(
        [0.3, 0.8], ListOf(PROBABILITY, 2, 2, ordered=True),
        "range of the factor the tumour's FLAIR difference from the surrounding brain is multiplied by "
        "(0: as the brain around it, 1: unchanged)",
    )  # fmt: skip
    patchy: float = setting(
        0.5, PROBABILITY, "probability that only a random smooth part of the tumour fades (else all of it)"
    )
    ring: int = setting(
        5, Range(1, 64, integer=True),
        "width in pixels (at the training size) of the ring of tissue around the tumour whose median FLAIR it fades to",
    )  # fmt: skip
    min_pixels: int = setting(40, COUNT, "only a slice whose tumour has at least this many pixels fades")
    in_flair_only: bool = setting(
        False, Flag(),
        "also fade FLAIR-only slices (augment.missing_sequence_p), where no T1 sequence shows the faded tumour",
    )  # fmt: skip


@dataclass
class SkullStripConfig:
    """Skull-stripped slices: what other sites' preprocessed scans look like."""

    p: float = setting(0.0, PROBABILITY, "probability of removing everything outside the slice's derived head mask (0: off)")
    erode: list[int] = setting(
        [1, 6], ListOf(Range(0, 64, integer=True), 2, 2, ordered=True),
        "range of the erosion (pixels at the model's resolution) of the head mask before stripping",
    )  # fmt: skip


@dataclass
class TumourPasteConfig:
    """Tumour copy-paste: another patient's tumour, with its own texture, in a training slice."""

    p: float = setting(
        0.0, PROBABILITY, "probability that a training slice receives another patient's tumour (0: off)"
    )
    margin: int = setting(
        4, Range(0, 64, integer=True),
        "pixels (at the model's resolution) the pasted tumour keeps from the edge of the recipient's head",
    )  # fmt: skip
    feather: float = setting(
        1.0, NON_NEGATIVE, "Gaussian sigma (pixels) of the pasted tumour's soft edge, outside its mask (0: a hard edge)"
    )
    min_pixels: int = setting(20, COUNT, "smallest donor tumour (pixels of its slice at the model's resolution)")
    height_window: float = setting(
        0.1, PROBABILITY,
        "donors come from slices within this fraction of their volume of the recipient's height in its own",
    )  # fmt: skip
    tries: int = setting(5, COUNT, "donors drawn for one slice before it is left as it was (a tumour that does not fit)")


@dataclass
class AugmentConfig:
    """Training augmentation (never applied to validation, evaluation or inference)."""

    enabled: bool = setting(True, Flag(), "false: no augmentation at all")
    hflip_p: float = setting(0.5, PROBABILITY, "probability of a left-right flip")
    missing_sequence_p: float = setting(
        0.15, PROBABILITY, "copy FLAIR over pre/post-contrast, as the dataset does for missing ones"
    )
    flair_only_share: float | str = setting(
        "uniform",
        Either((OneOf(("uniform",)), PROBABILITY)),
        "share of the missing-sequence draws that keep only FLAIR (the others lose one sequence); "
        "uniform: pre missing, post missing and both equally often (1/3)",
    )
    affine: AffineConfig = field(default_factory=AffineConfig)
    elastic: ElasticConfig = field(default_factory=ElasticConfig)
    intensity: IntensityConfig = field(default_factory=IntensityConfig)
    lesion: LesionConfig = field(default_factory=LesionConfig)
    lesion_t1: LesionT1Config = field(default_factory=LesionT1Config)
    lesion_faint: LesionFaintConfig = field(default_factory=LesionFaintConfig)
    skull_strip: SkullStripConfig = field(default_factory=SkullStripConfig)
    tumour_paste: TumourPasteConfig = field(default_factory=TumourPasteConfig)


@dataclass
class ModelConfig:
    """The network (MONAI architectures; see mri_seg/models/factory.py)."""

    name: str = setting("unet", OneOf(ARCHITECTURES), "architecture (MONAI; see mri_seg/models/factory.py)")
    in_channels: int = setting(3, COUNT, "input channels: sequences x (2 * data.context_slices + 1)")
    out_channels: int = setting(1, OneOf((1,)), "output channels: one tumour logit (sigmoid BCE + Dice)")
    channels: list[int] = setting(
        [16, 32, 64, 128, 256], ListOf(COUNT, 2), "filters per level (segresnet: doubling)"
    )
    strides: list[int] = setting([2, 2, 2, 2], ListOf(COUNT, 1), "downsampling between levels (segresnet: all 2)")
    num_res_units: int = setting(
        2, COUNT_OR_ZERO, "unet: residual units per block; dynunet: > 0 = residual blocks"
    )
    norm: str = setting(
        "batch", OneOf(NORMS), "normalisation layers: unet, segresnet, dynunet (attention_unet: always batch)"
    )
    dropout: float = setting(0.0, FRACTION_BELOW_ONE, "dropout probability")
    deep_supervision: int = setting(
        2, COUNT_OR_ZERO, "dynunet: auxiliary output heads in training (0 = off, < len(strides))"
    )
    blocks_down: list[int] = setting(
        [], ListOf(COUNT), "segresnet: residual blocks per level; [] = 1,2,2,4,4..."
    )
    output_prior: float = setting(
        0.01, FRACTION_BELOW_ONE, "initial tumour probability of every pixel (output bias); 0 = MONAI's init"
    )


@dataclass
class TrainConfig:
    """The train stage: optimiser, schedule, loss, stopping and which checkpoint ships."""

    epochs: int = setting(50, COUNT, "length of the schedule")
    batch_size: int = setting(16, COUNT, "slices per optimiser step")
    lr: float = setting(1e-3, Range(0.0, 10.0, lo_open=True), "AdamW learning rate (cosine: the peak, after warm-up)")
    weight_decay: float = setting(1e-4, NON_NEGATIVE, "AdamW weight decay")
    scheduler: str = setting(
        "cosine", OneOf(SCHEDULERS), "learning-rate schedule: cosine (with linear warm-up) or plateau"
    )
    warmup_epochs: int = setting(1, COUNT_OR_ZERO, "cosine: epochs of linear warm-up before the decay")
    grad_clip: float = setting(1.0, NON_NEGATIVE, "gradient norm clip (0: none)")
    ema_decay: float = setting(
        0.0, FRACTION_BELOW_ONE,
        "exponential moving average of the weights, updated every optimiser step with this decay (0.995: over "
        "~200 steps); validation scores it and the checkpoints ship it; 0 = off (mri_seg/training/ema.py)",
    )  # fmt: skip
    seed: int = setting(0, SEED, "random seed of weights, sampling order and augmentation")
    device: str = setting("auto", OneOf(DEVICES), "auto (CUDA when available), cpu or cuda")
    amp: bool = setting(True, Flag(), "mixed precision on CUDA")
    cpu_bf16: bool = setting(
        False, Flag(),
        "bf16 autocast for the CPU training step where the CPU has AMX bfloat16 tiles (amx_bf16), float32 elsewhere "
        "(with AVX512-BF16 alone a bf16 step measured 1.2x / 1.6x slower, eager / compiled); validation and "
        "inference stay float32 on the CPU",
    )  # fmt: skip
    channels_last: bool = setting(
        True, Flag(), "channels-last memory format of the model and its batches, on every device (CPU: ~8% faster steps)"
    )
    compile: bool = setting(
        False, Flag(),
        "torch.compile the training step's network (forward and backward; validation, checkpoints and inference stay "
        "eager): faster steps after a first compiled batch of some seconds; needs a C++ compiler on the CPU (g++ or "
        "clang++, else training runs eager and says so) (mri_seg/training/runtime.py)",
    )  # fmt: skip
    val_every: int = setting(1, COUNT, "validate every this many epochs (and after the last)")
    early_stop_patience: int = setting(0, COUNT_OR_ZERO, "epochs without val improvement before stopping; 0 disables")
    tumour_oversample: float = setting(
        0.0, PROBABILITY, "target fraction of tumour slices per epoch; 0 = natural"
    )
    tumour_patient_balance: float = setting(
        0.0, PROBABILITY,
        "how train.tumour_oversample's tumour draws are shared: 0 = each tumour slice alike (a patient's share grows "
        "with its tumour's slices, so small tumours are drawn least); 1 = each patient with a tumour alike, over its "
        "own tumour slices; in between, the mix (mri_seg/training/samplers.py)",
    )  # fmt: skip
    loss: str = setting("dice_bce", OneOf(LOSSES), "training loss (see mri_seg/losses.py)")
    bce_weight: float = setting(
        1.0, NON_NEGATIVE, "weight of the pixel term: BCE (dice_bce, tversky_bce) or focal loss (dice_focal)"
    )
    bce_topk: float = setting(
        1.0,
        Range(0.0, 1.0, lo_open=True),
        "dice_bce, tversky_bce: the BCE term averages only this fraction of the batch's pixels, the highest-loss "
        "ones (nnU-Net's TopK loss; 0.1 = the hardest 10%); 1 = every pixel",
    )
    boundary_weight: float = setting(
        0.0, NON_NEGATIVE,
        "weight of the boundary loss added to the others (MONAI BoundaryLoss: probability x the target's signed "
        "distance in pixels, so errors far from the tumour's edge cost more); 0 = off",
    )
    dice_weight: float = setting(
        1.0, NON_NEGATIVE, "weight of the overlap term: soft Dice, or Tversky for tversky_bce"
    )
    dice_batch: bool = setting(
        True, Flag(), "overlap term over the whole batch (true) or the mean over images (false)"
    )
    tversky_alpha: float = setting(0.5, NON_NEGATIVE, "tversky_bce: weight of false positives")
    tversky_beta: float = setting(
        0.5, NON_NEGATIVE, "tversky_bce: weight of false negatives (> alpha fights under-segmentation)"
    )
    focal_gamma: float = setting(2.0, NON_NEGATIVE, "dice_focal: focusing exponent of the focal loss (0 = BCE)")
    max_time_minutes: float = setting(
        0.0, NON_NEGATIVE,
        "safety cap (minutes) on one invocation's wall time: training stops after an epoch when the next would "
        "overrun it, says so, and stays unfinished (resumable); it never shapes the LR schedule. 0: none",
    )  # fmt: skip
    ship_checkpoint: str = setting(
        "best", OneOf(SHIP_CHOICES),
        "the deliverable: which file of RUN/checkpoints (or of each fold<K>/) `--checkpoint RUN/checkpoints` means: "
        "best (the validation-selected epoch) or last (the end of the schedule)",
    )  # fmt: skip


@dataclass
class PostprocessConfig:
    """From probabilities to a mask: threshold, small components, test-time flips."""

    threshold: float = setting(0.5, PROBABILITY, "probability threshold of a tumour pixel")
    min_component_pixels: int = setting(
        0, COUNT_OR_ZERO, "remove connected components smaller than this (per slice)"
    )
    min_component_voxels: int = setting(
        0, COUNT_OR_ZERO, "remove 3D components (26-connected, stacked slices) smaller than this"
    )
    largest_only: bool = setting(
        False, Flag(), "keep only the largest 3D component (drop all not connected to it)"
    )
    component_rule: str = setting(
        "size", OneOf(COMPONENT_RULES),
        "largest_only: what makes a component the largest: its voxels (size), its summed probability (mass) or its "
        "voxels bright on FLAIR (bright: at or above the scan's bright_quantile, so a confident dark blob such as "
        "the ventricles does not outgrow a FLAIR-bright tumour)",
    )  # fmt: skip
    bright_quantile: float = setting(
        0.75, Range(0.0, 1.0, lo_open=True, hi_open=True),
        "component_rule bright: a voxel counts where its FLAIR is at or above this quantile of the scan's head "
        "(every voxel brighter than the scan's darkest value, its background)",
    )  # fmt: skip
    keep_ratio: float = setting(
        1.0, Range(0.0, 1.0, lo_open=True),
        "largest_only: also keep every component scoring at least this fraction of the kept one (1: only one)",
    )  # fmt: skip
    grow_threshold: float = setting(
        0.0, PROBABILITY,
        "hysteresis: the kept components grow into the 26-connected voxels whose probability is at least this "
        "(lower) threshold, so a tumour found in part is completed and nothing apart from it is added; 0 (or >= "
        "threshold): off",
    )  # fmt: skip
    close_radius: float = setting(
        0.0, Range(0.0, 0.25),
        "a morphological closing of each slice's kept mask by a disc of this radius, as a fraction of the slice's "
        "width (0.06: 15 px of a 256-px slice, about 15 mm of a head-sized field of view): gaps between fragments "
        "of a tumour found in parts are filled, nothing apart from it is added; 0: off",
    )  # fmt: skip
    fill_holes: bool = setting(
        False, Flag(),
        "fill every region a slice's kept mask encloses (whole-tumour labels have no holes; a cystic core the model "
        "misses comes out as a ring)",
    )  # fmt: skip
    flair_view_threshold: float = setting(
        0.0, PROBABILITY,
        "the FLAIR view: the scan is predicted a second time with FLAIR copied into every channel, and each of that "
        "prediction's 3D components at or above this probability that overlaps the kept tumour and has at least "
        "flair_view_min_ratio x its voxels is added (a lesion FLAIR shows whose T1 look made the models reject part "
        "of it); doubles the network passes of a 3-sequence scan; 0: off",
    )  # fmt: skip
    flair_view_min_ratio: float = setting(
        1.5, POSITIVE, "the FLAIR view: how many times the kept tumour's voxels a FLAIR-view component must have"
    )
    flair_only_threshold: float = setting(
        0.0, PROBABILITY,
        "a FLAIR-only scan's threshold (FLAIR in every channel: a single-sequence scan, --input-sequences "
        "flair_only); 0: `threshold`. The cv stage chooses it on the out-of-fold FLAIR view, which is a FLAIR-only "
        "scan's prediction, and stores it with the deliverable like `threshold` (where the FLAIR view is on)",
    )  # fmt: skip
    flair_only_keep_ratio: float = setting(
        0.0, PROBABILITY, "a FLAIR-only scan's keep_ratio (chosen with flair_only_threshold); 0: `keep_ratio`"
    )
    sweep_thresholds: list[float] = setting(
        [0.3, 0.4, 0.5, 0.6, 0.7], ListOf(Range(0.0, 1.0, lo_open=True, hi_open=True), min_len=1, ordered=True),
        "the thresholds every evaluation also scores each patient at (summary.json threshold_sweep); cv chooses the "
        "deliverable's threshold among them on the out-of-fold patients (ties: the one nearest 0.5)",
    )  # fmt: skip
    sweep_grow_thresholds: list[float] = setting(
        [], ListOf(PROBABILITY),
        "the threshold sweep also scores these grow_threshold values (with every swept keep_ratio), and cv chooses "
        "threshold, keep_ratio and grow_threshold together on the out-of-fold patients (ties: the configured ones); "
        "[]: not swept",
    )  # fmt: skip
    sweep_keep_ratios: list[float] = setting(
        [], ListOf(Range(0.0, 1.0, lo_open=True)),
        "largest_only: the threshold sweep also scores these keep_ratio values, and cv chooses the pair "
        "(threshold, keep_ratio) on the out-of-fold patients (ties: the configured keep_ratio); []: the threshold only",
    )  # fmt: skip
    tta_flip: bool = setting(False, Flag(), "horizontal-flip test-time augmentation")
    tta_rotations: list[float] = setting(
        [], ListOf(Range(-45.0, 45.0)),
        "test-time rotations in degrees (about the image centre): each is one more pass per member (flipped too "
        "with tta_flip), its probabilities rotated back and averaged with the others (mri_seg.inference.tta); keep "
        "them within augment.affine.rotate; []: none",
    )  # fmt: skip
    threshold_from_cv: bool = setting(
        True, Flag(),
        "given a run's checkpoints folder, use the threshold (and keep_ratio, where cv chose one) the cv stage chose "
        "on out-of-fold predictions (RUN/checkpoints/postprocess.json) instead of `threshold`; --threshold turns it off",
    )  # fmt: skip


@dataclass
class ReviewConfig:
    """Review flag (mri_seg/uncertainty.py): when a scan or patient is flagged for a person to check."""

    threshold: float = setting(
        0.3, PROBABILITY,
        "a scan/patient whose uncertainty score (0..1: mean of the passes' entropy over the predicted region and "
        "their relative volume spread) exceeds this is flagged; default chosen on lgg-dev: docs/review_flags.md",
    )  # fmt: skip
    budget: float = setting(
        0.0, PROBABILITY,
        "cv: choose the threshold that flags this fraction of the out-of-fold patients (the most uncertain) and "
        "store it with the deliverable (RUN/checkpoints/postprocess.json); 0: keep `threshold`",
    )  # fmt: skip
    threshold_from_cv: bool = setting(
        True, Flag(),
        "given a run's checkpoints folder, use the review threshold cv chose for its budget instead of `threshold`",
    )  # fmt: skip


@dataclass
class EvalConfig:
    """The evaluate and cv stages: which patients, post-processing, statistics and pages."""

    split: str = setting("test", OneOf(SPLITS), "the split of RUN/splits.csv to evaluate")
    postprocess: PostprocessConfig = field(default_factory=PostprocessConfig)
    bootstrap_samples: int = setting(2000, COUNT, "bootstrap resamples of the confidence intervals")
    montage_slices: int = setting(8, COUNT, "slices per patient in the overlay montage")
    batch_size: int = setting(16, COUNT, "slices per forward pass")
    review: ReviewConfig = field(default_factory=ReviewConfig)
    patient_pages: bool = setting(
        True, Flag(), "write RUN/eval/<split>/patients/<patient>.html (slice viewer per patient)"
    )
    input_sequences: str = setting(
        "all", OneOf(INPUT_SEQUENCES),
        "all: the slices as read; flair_only: FLAIR copied into every channel, as inference does for a "
        "single-sequence scan (measures the FLAIR-only figure on the same patients)",
    )  # fmt: skip


DEFAULT_SERIES_RULES = [  # one alternative per item (tried in order, case-insensitive): FLAIR, then post, pre, T2
    "flair: flair", r"flair: dark.?fluid", r"flair: \btirm", r"flair: \bt2.?fl\b",
    r"post: \+\s*c\b", r"post: \+\s*gd", "post: post", "post: gado", r"post: \bgd\b", "post: contrast",
    r"post: \bce\b", r"post: \bt1.?ce?\b",
    r"pre: \bt1", "pre: mprage", "pre: spgr", "pre: bravo",
    r"t2: \bt2",
]


@dataclass
class DicomConfig:
    """DICOM studies (docs/dicom.md): which series feeds which model input, slice-gap tolerance."""

    series_rules: list[str] = setting(
        DEFAULT_SERIES_RULES, SeriesRules(),
        "'sequence: regex' rules tried in order (case-insensitive) on SeriesDescription, ProtocolName, "
        "SequenceName; the first match names a series (then the acquisition fallbacks)",
    )  # fmt: skip
    flair_min_inversion_ms: float = setting(
        1500.0, POSITIVE, "fallback: a series no rule names, with InversionTime >= this (ms), is FLAIR"
    )
    t1_max_repetition_ms: float = setting(
        1000.0, POSITIVE,
        "fallback: a series no rule names, with RepetitionTime <= this (ms) and no inversion, is T1 (post-contrast "
        "when ContrastBolusAgent is set, else pre-contrast)",
    )  # fmt: skip
    tie_break: str = setting(
        "most_slices", OneOf(("most_slices", "latest_series")),
        "two series for one sequence: most_slices (then the later series number) or latest_series (then more slices)",
    )  # fmt: skip
    gap_tolerance: float = setting(
        0.1, Range(0.0, 1.0),
        "a slice gap differing from the series' median gap by more than this fraction of it is warned about, "
        "naming the gap",
    )  # fmt: skip


@dataclass
class InferConfig:
    """The infer stage: a folder of scans -> masks, probabilities, a table and a report."""

    tile_size: int = setting(
        0, Either((OneOf((0,)), Range(8, integer=True))), "sliding-window tile size; 0 = the model's training size"
    )
    overlap: float = setting(0.5, FRACTION_BELOW_ONE, "overlap of neighbouring tiles")
    tile_batch: int = setting(8, COUNT, "tiles per forward pass")
    blend: str = setting("gaussian", OneOf(BLENDS), "weighting of overlapping tiles (MONAI sliding-window blend mode)")
    backend: str = setting(
        "torch", OneOf(BACKENDS),
        "what runs the forward passes: torch, or onnxruntime on the members' ONNX graphs (a bundle's, else "
        "exported in memory; pip install mri_seg[onnx]); tiling, TTA and post-processing are the same code",
    )  # fmt: skip
    nifti_axis: int | str = setting(
        "auto", OneOf(("auto", 0, 1, 2)),
        "NIfTI slicing: auto reorients a volume from its affine to the training layout (axial slices, rows "
        "anterior->posterior, columns patient right->left); 0/1/2 slices that stored array axis as is",
    )  # fmt: skip
    sequences: list[str] = setting(
        ["post", "flair", "pre"], SequenceNames(),
        "the sequences in a 4D NIfTI's last axis, in order (names: pre, flair, post, t2; aliases t1, t1ce...); "
        "default: the Kaggle TIFF channels as OpenCV reads them; [pre, flair, post] is the natural order",
    )  # fmt: skip
    nnunet_channels: list[str] = setting(
        ["flair", "pre", "post", "t2"], SequenceNames(),
        "what nnU-Net-named files <case>_0000, _0001, ... hold (default: the MSD/nnU-Net BrainTumour order)",
    )  # fmt: skip
    background: str = setting(
        "zero", OneOf(BACKGROUNDS),
        "which intensity is background (left out of the normalisation, as 0 is in training): border = a "
        "value shared by at least infer.background_share of the pixels on the slices' outer frame (z-scored "
        "or shifted scans), else 0; zero = always 0 (the default: border did not help the shipped models, "
        "docs/accuracy.md)",
    )  # fmt: skip
    background_share: float = setting(
        0.9, Range(0.5, 1.0, lo_open=True), "share of the frame's pixels one value must have to be the background"
    )
    context_mm: float = setting(
        0.0, NON_NEGATIVE,
        "distance of the 2.5D neighbours in training (TCGA LGG slices, ~3 mm; the Kaggle files store no "
        "spacing): in a scan that states its slice spacing they are taken round(context_mm / spacing) slices "
        "apart (at least 1); 0 = always adjacent slices (the default; the LGG CPU recipe sets 3.0: its models, trained with "
        "the tumour paste, over-call on 1 mm volumes given neighbours 1 mm apart, docs/accuracy.md)",
    )  # fmt: skip
    save_probabilities: bool = setting(False, Flag(), "also write probability maps")
    overwrite: bool = setting(False, Flag(), "recompute scans whose outputs exist")
    postprocess: PostprocessConfig = field(default_factory=PostprocessConfig)
    review: ReviewConfig = field(default_factory=ReviewConfig)
    report: bool = setting(True, Flag(), "write OUT/report.html (sortable scan table, a slice-viewer page per scan)")
    dicom: DicomConfig = field(default_factory=DicomConfig)


# --------------------------------------------------------------------------- checks of several keys


def _split_sum(v: dict[str, Any]) -> str | None:
    s = v["split"]
    total = s["train"] + s["val"] + s["test"]
    if abs(total - 1.0) > 1e-6:
        return f"config keys split.train + split.val + split.test sum to {total:g}; allowed: a sum of 1"
    if s["train"] <= 0:
        return "config key 'split.train' is 0; allowed: a number > 0 (training needs patients)"
    return None


def _unet_levels(v: dict[str, Any]) -> str | None:
    m = v["model"]
    if len(m["strides"]) != len(m["channels"]) - 1:
        return (f"config key 'model.strides' has {len(m['strides'])} entries for {len(m['channels'])} "
                f"model.channels; allowed: len(model.channels) - 1 = {len(m['channels']) - 1} entries")  # fmt: skip
    return None


def _loss_weights(v: dict[str, Any]) -> str | None:
    t = v["train"]
    if t["bce_weight"] == 0 and t["dice_weight"] == 0:
        return "config keys train.bce_weight and train.dice_weight are both 0; allowed: at least one > 0"
    return None


def _tversky_weights(v: dict[str, Any]) -> str | None:
    t = v["train"]
    if t["loss"] == "tversky_bce" and t["tversky_alpha"] == 0 and t["tversky_beta"] == 0:
        return "config keys train.tversky_alpha and train.tversky_beta are both 0; allowed: at least one > 0"
    return None


def _topk_pixel_term(v: dict[str, Any]) -> str | None:
    t = v["train"]
    if t["loss"] == "dice_focal" and t["bce_topk"] != 1.0:
        return (f"config key train.bce_topk is {t['bce_topk']} with train.loss dice_focal; allowed: 1 "
                "(it selects the hardest pixels of the BCE term; the focal term already weighs them)")  # fmt: skip
    return None


def _patient_balance_needs_oversampling(v: dict[str, Any]) -> str | None:
    t = v["train"]
    if t["tumour_patient_balance"] > 0 and t["tumour_oversample"] == 0:
        return (f"config key train.tumour_patient_balance is {t['tumour_patient_balance']} with train.tumour_oversample "
                "0; allowed: 0 (it shares the oversampled tumour draws; without oversampling there are none)")  # fmt: skip
    return None


# Checks that involve several keys, run once every key follows its own rule.
CROSS_RULES: tuple[CrossRule, ...] = (
    _split_sum, _unet_levels, _loss_weights, _tversky_weights, _topk_pixel_term, _patient_balance_needs_oversampling,
)  # fmt: skip
