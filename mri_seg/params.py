"""The config values a stage's result depends on: what its fingerprint and ``train --resume`` compare.

Each stage declares the config sections (or dotted keys) it reads
(:attr:`mri_seg.pipelines.stage.Stage.params`); :func:`config_params` cuts them out of a
config, leaving out :data:`RUN_ONLY_KEYS`.
"""

from __future__ import annotations

import copy
from typing import Any

from mri_seg.config import Config, config_to_dict, get_dotted

# Keys that bound how a stage runs but never what it computes: left out of stage
# fingerprints and of the --resume comparison. The time cap only stops a run early (the
# run is then unfinished and resumable, so raising the cap must not re-train); caching
# slices in memory and prepare's reader threads do not change a single value; a compiled
# training step computes the eager step's values to rounding, and runs eager on a machine
# without a compiler, so the same config trains either way (resuming across them is allowed).
RUN_ONLY_KEYS: tuple[str, ...] = (
    "train.max_time_minutes", "data.cache_in_memory", "prepare.workers", "train.compile",
)  # fmt: skip
_MISSING = object()


def config_params(cfg: Config, keys: tuple[str, ...]) -> dict[str, Any]:
    """The part of ``cfg`` under the dotted ``keys`` (sections or single keys), as a nested dict
    without the :data:`RUN_ONLY_KEYS`."""
    full = config_to_dict(cfg)
    out: dict[str, Any] = {}
    for dotted in keys:
        *parents, leaf = dotted.split(".")
        node = out
        for key in parents:
            node = node.setdefault(key, {})
        value = get_dotted(full, dotted, _MISSING)
        if value is _MISSING:
            raise KeyError(f"no config key '{dotted}'")
        node[leaf] = copy.deepcopy(value)
    for dotted in RUN_ONLY_KEYS:
        *parents, leaf = dotted.split(".")
        parent = get_dotted(out, ".".join(parents)) if parents else out
        if isinstance(parent, dict):
            parent.pop(leaf, None)
    return out
