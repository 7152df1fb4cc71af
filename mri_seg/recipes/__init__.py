"""The config recipes and pipeline definitions, shipped inside the package.

``mri_seg/recipes/configs/*.yaml`` and ``mri_seg/recipes/pipelines/*.yaml`` are what the
code uses (``mri-seg-demo`` runs ``pipelines/demo.yaml`` from here, so it works from an
installed wheel, not only from a clone). The repository's top-level ``configs/`` and
``pipelines/`` are the documented copies: byte-identical, checked by
``tests/test_recipes.py``. Edit one, copy it over the other.
"""

from __future__ import annotations

from pathlib import Path

RECIPES = Path(__file__).resolve().parent
CONFIGS = RECIPES / "configs"
PIPELINES = RECIPES / "pipelines"


def packaged_pipeline(name: str) -> Path | None:
    """``PIPELINES/<name>.yaml`` for a bare name such as ``demo`` or ``lgg_cpu.yaml``; None otherwise."""
    if not name or Path(name).name != name:
        return None
    path = PIPELINES / (name if name.endswith(".yaml") else f"{name}.yaml")
    return path if path.is_file() else None
