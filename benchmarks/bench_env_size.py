"""Installed size of an environment that can run inference vs the whole development environment.

    python benchmarks/bench_env_size.py [--extras onnx] [--without torch]   # Python >= 3.11 (tomllib)

Reads the installed distributions of the running Python (importlib.metadata): the closure of
mri_seg's core requirements plus ``--extras`` (what ``pip install 'mri_seg[onnx]'`` installs),
the same closure ``--without`` some packages (what leaving them out would save), and every
distribution of the environment (the full one: test tools, extras, everything). Sizes are the
files each distribution records (``RECORD``), in MB. Requirements come from pyproject.toml.
"""

from __future__ import annotations

import argparse
import re
import sys
from importlib import metadata
from pathlib import Path

import tomllib

REPO_ROOT = Path(__file__).resolve().parents[1]


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(spec: str) -> str:
    return canonical(re.split(r"[\s<>=!~;\[(]", spec.strip(), maxsplit=1)[0])


def installed() -> dict[str, metadata.Distribution]:
    return {canonical(d.metadata["Name"]): d for d in metadata.distributions()}


def dist_mb(dist: metadata.Distribution) -> float:
    total = 0
    for f in dist.files or []:
        try:
            total += dist.locate_file(f).stat().st_size  # type: ignore[union-attr]
        except OSError:
            pass
    return total / 1e6


def closure(roots: list[str], dists: dict[str, metadata.Distribution], without: set[str]) -> set[str]:
    """Names reachable from ``roots`` through installed requirements (extras and markers of dependencies ignored)."""
    seen: set[str] = set()
    todo = [r for r in roots if r not in without]
    while todo:
        name = todo.pop()
        if name in seen or name not in dists:
            continue
        seen.add(name)
        for req in dists[name].requires or []:
            if "extra ==" in req:
                continue
            dep = requirement_name(req)
            if dep not in without:
                todo.append(dep)
    return seen


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--extras", nargs="*", default=["onnx"])
    p.add_argument("--without", nargs="*", default=["torch"])
    args = p.parse_args()
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    roots = [requirement_name(r) for r in project["dependencies"]]
    for extra in args.extras:
        roots += [requirement_name(r) for r in project["optional-dependencies"][extra]]
    dists = installed()
    sizes = {name: dist_mb(d) for name, d in dists.items()}
    runtime = closure(roots, dists, set())
    lighter = closure(roots, dists, {canonical(w) for w in args.without})
    total_runtime = sum(sizes[n] for n in runtime)
    total_lighter = sum(sizes[n] for n in lighter)
    total_all = sum(sizes.values())
    print(f"python {sys.version.split()[0]}, {len(dists)} distributions installed")
    print(f"mri_seg core + [{','.join(args.extras)}]: {len(runtime)} distributions, {total_runtime:.0f} MB")
    print(f"  without {', '.join(args.without)} (and what only they need): {len(lighter)} distributions, "
          f"{total_lighter:.0f} MB")
    print(f"whole environment: {len(dists)} distributions, {total_all:.0f} MB "
          f"(runtime is {100 * total_runtime / total_all:.0f}% of it)")
    largest = sorted(runtime, key=lambda n: -sizes[n])[:8]
    print("largest in the runtime: " + ", ".join(f"{n} {sizes[n]:.0f} MB" for n in largest))


if __name__ == "__main__":
    main()
