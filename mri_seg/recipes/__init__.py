"""The config recipes and pipeline definitions, shipped inside the package.

``mri_seg/recipes/configs/*.yaml`` and ``mri_seg/recipes/pipelines/*.yaml`` are the only
copies in the repository: the code uses them (``mri-seg-demo`` runs ``pipelines/demo.yaml``
from here, so it works from an installed wheel, not only from a clone), and the top-level
``configs/`` and ``pipelines/`` folders of a clone are symbolic links to these two folders
(checked by ``tests/e2e/test_recipes.py``), so the documented paths and the package data are
the same files. A pipeline names its configs as ``../configs/<name>.yaml``, which resolves
to the same file through either path.
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
