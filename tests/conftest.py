"""Shared fixtures: the real lgg-dev subset (unpacked once, cached outside the repo) and synthetic data.

- ``lgg_dev_dir``: path of the unpacked real ``kaggle_3m/`` (40 patients, 1409 slices). Read-only:
  copy what you modify. Skips when ``../shared/data/lgg-dev/kaggle_3m.tar.gz`` is absent, and
  fails instead with ``MRI_SEG_REQUIRE_REALDATA=1`` (CI: see ``ci_switches.py``).
  Cache folder: ``$MRI_SEG_CACHE/lgg-dev`` (default ``~/.cache/mri_seg/lgg-dev``).
- ``synthetic_dir``: a small synthetic Kaggle-layout dataset (8 patients, 12-20 slices of 128x128).
- ``synthetic_run``: that dataset prepared and split (default config) in a run directory.
Session fixtures are shared by many tests: treat them as read-only.
"""

from __future__ import annotations

import os
import shutil
import tarfile
import tempfile
from pathlib import Path

import pytest
from ci_switches import REQUIRE_REALDATA, unavailable

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

REPO_ROOT = Path(__file__).resolve().parents[1]
LGG_DEV_ARCHIVE = REPO_ROOT.parent / "shared" / "data" / "lgg-dev" / "kaggle_3m.tar.gz"
MARKER = ".kaggle_3m.complete"


def cache_root() -> Path:
    base = os.environ.get("MRI_SEG_CACHE")
    return Path(base) if base else Path.home() / ".cache" / "mri_seg"


def unpack_lgg_dev(archive: Path, dest_root: Path) -> Path:
    """Unpack ``archive`` into ``dest_root/kaggle_3m`` once; safe when several processes race.

    Each process extracts into its own temporary folder and renames the result into
    place; the rename is atomic, so ``kaggle_3m`` is either absent or complete. A marker
    holding the archive size records a finished unpack.
    """
    dest = dest_root / "kaggle_3m"
    marker = dest_root / MARKER
    stamp = str(archive.stat().st_size)
    if dest.is_dir() and marker.is_file() and marker.read_text().strip() == stamp:
        return dest
    dest_root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".unpack-", dir=dest_root))
    try:
        if not dest.is_dir():
            with tarfile.open(archive, "r:gz") as tar:
                tar.extractall(tmp, filter="data")
            if not (tmp / "kaggle_3m").is_dir():
                raise RuntimeError(f"{archive} does not contain kaggle_3m/")
            try:
                os.rename(tmp / "kaggle_3m", dest)
            except OSError:
                if not dest.is_dir():  # lost a race only if the winner's copy is there
                    raise
        marker.write_text(stamp + "\n")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


@pytest.fixture(scope="session")
def lgg_dev_dir() -> Path:
    if not LGG_DEV_ARCHIVE.is_file():
        unavailable(f"real-data test: {LGG_DEV_ARCHIVE} not found (lgg-dev subset of the Kaggle LGG dataset)",
                    REQUIRE_REALDATA)
    return unpack_lgg_dev(LGG_DEV_ARCHIVE, cache_root() / "lgg-dev")


@pytest.fixture(scope="session")
def synthetic_dir(tmp_path_factory) -> Path:
    from mri_seg.data.synthetic import generate_dataset

    return generate_dataset(tmp_path_factory.mktemp("synthetic") / "kaggle_3m", n_patients=8, seed=0,
                            min_slices=12, max_slices=20, size=128)  # fmt: skip


@pytest.fixture(scope="session")
def synthetic_run(synthetic_dir, tmp_path_factory) -> Path:
    from mri_seg.config import load_config, save_resolved_config
    from mri_seg.data.kaggle_lgg import prepare_dataset
    from mri_seg.data.splits import split_run_dir

    run = tmp_path_factory.mktemp("synthetic_run") / "run"
    cfg = load_config(None, ["prepare.workers=1"])
    prepare_dataset(synthetic_dir, run, cfg, progress=False)
    split_run_dir(run, cfg)
    save_resolved_config(cfg, run, "prepare")
    save_resolved_config(cfg, run, "split")
    return run


@pytest.fixture(scope="session")
def load_benchmark():
    """Import a script from ``benchmarks/`` by file name (they are scripts, not a package)."""
    import importlib.util
    import sys

    def load(name: str):
        path = Path(__file__).resolve().parents[1] / "benchmarks" / f"{name}.py"
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # as an import would: dataclasses and pickling look the module up there
        spec.loader.exec_module(module)
        return module

    return load
