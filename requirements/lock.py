#!/usr/bin/env python3
"""The project's pinned installs, regenerated from pyproject.toml with uv — and the check that they are not stale.

    python requirements/lock.py            # regenerate every file below (reads PyPI; about a minute)
    python requirements/lock.py --check    # exit 1 when pyproject.toml or pins.in changed since (no network)

- `constraints.txt`: every package of every extra, one version each (markers where Python versions need two), for
  `pip install -c requirements/constraints.txt -e ".[…]"` — the README's commands, .ci/run, the workflows and the
  pipeline image install through it. No hashes: pip ignores a constraints file's hashes, and torch's `+cpu` build
  must still match `torch==…`.
- `serve-openvino.lock`, `serve-onnxruntime.lock`: what the serving image installs with `--require-hashes` (the API,
  one runtime, the PostgreSQL driver), the same versions as constraints.txt, every file's sha256. The Hugging Face
  Space's requirements.txt is pinned from serve-openvino.lock.
- `drift.lock`: the drift job's image (the serving packages, OpenVINO, Evidently), hashed likewise.
- `build.lock`: pyproject.toml's build-system (setuptools), hashed: what the images build the project's wheel with.

Each file's first line records a digest of what it was made from (pyproject.toml's requirements and pins.in), so a
dependency added to pyproject.toml without running this fails `--check` and tests/test_dependency_lock.py."""
from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
PINS = HERE/"pins.in"
PYTHON = "3.11"   # the oldest Python the project supports, and the serving image's
CONSTRAINTS = "constraints.txt"
# hashed locks: file name → the extras it installs (with the core dependencies)
LOCKS = {"serve-openvino.lock": ["api", "openvino", "postgres"],
         "serve-onnxruntime.lock": ["api", "onnxruntime", "postgres"],
         "drift.lock": ["api", "openvino", "postgres", "drift"],
         "build.lock": None}   # None: pyproject.toml's [build-system] requires
DIGEST_PREFIX = "# made from: sha256 "


def requirements_digest(pyproject: Path = REPO/"pyproject.toml", pins: Path = PINS) -> str:
    "A digest of everything the files are made from: pyproject.toml's requirements, pins.in, the lock definitions."
    toml = tomllib.loads(pyproject.read_text())
    project = toml["project"]
    made_from = dict(python=project.get("requires-python"), dependencies=project.get("dependencies", []),
                     build=toml.get("build-system", {}).get("requires", []),
                     extras=project.get("optional-dependencies", {}), pins=pins.read_text(), locks=LOCKS, target=PYTHON)
    return hashlib.sha256(json.dumps(made_from, sort_keys=True).encode()).hexdigest()


def compile_file(out: Path, extras: list[str] | None, hashes: bool, digest: str, requirements: list[str] | None = None):
    "`uv pip compile` pyproject.toml (all extras when `extras` is None) or `requirements` into `out`, the digest line on top."
    source = "pyproject.toml" if requirements is None else "-"   # "-": the requirements, on standard input
    uv = shutil.which("uv") or sys.exit("uv is not installed: pip install -c requirements/constraints.txt uv")
    command = [uv, "pip", "compile", source, "--universal", "--python-version", PYTHON,
               "--no-header", "--annotation-style", "line"]
    if source == "pyproject.toml": command += ["--all-extras"] if extras is None else [a for e in extras for a in ("--extra", e)]
    command += ["--constraint", str(PINS.relative_to(REPO))]
    if hashes: command += ["--generate-hashes", "--constraint", f"requirements/{CONSTRAINTS}"]
    res = subprocess.run(command, cwd=REPO, capture_output=True, text=True,
                         input=None if requirements is None else "\n".join(requirements) + "\n")
    if res.returncode != 0: sys.exit(f"uv pip compile failed for {out.name}:\n{res.stderr}")
    what = ("the build-system" if source != "pyproject.toml" else "every extra" if extras is None
            else "extras " + ", ".join(extras))
    header = (f"{DIGEST_PREFIX}{digest}\n# Python >= {PYTHON}, {what} of pyproject.toml. Do not edit: "
              f"python requirements/lock.py regenerates it.\n")
    tmp = out.with_suffix(out.suffix + ".tmp")
    tmp.write_text(header + res.stdout)
    tmp.replace(out)


def stale_files(digest: str | None = None) -> list[str]:
    "The files whose digest line is not `digest` (default: pyproject.toml's now), with the reason."
    digest = digest or requirements_digest()
    out = []
    for name in [CONSTRAINTS, *LOCKS]:
        path = HERE/name
        first = path.read_text().splitlines()[0] if path.is_file() else ""
        if not path.is_file(): out.append(f"{name}: missing")
        elif first != DIGEST_PREFIX + digest: out.append(f"{name}: made from another pyproject.toml or pins.in")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="only check that the files match pyproject.toml (no network)")
    args = parser.parse_args(argv)
    digest = requirements_digest()
    if args.check:
        stale = stale_files(digest)
        for line in stale: print(f"stale: requirements/{line}", file=sys.stderr)
        if stale: print("run: python requirements/lock.py (and commit the files)", file=sys.stderr)
        return 1 if stale else 0
    compile_file(HERE/CONSTRAINTS, None, hashes=False, digest=digest)   # first: the locks take its versions
    build = tomllib.loads((REPO/"pyproject.toml").read_text())["build-system"]["requires"]
    for name, extras in LOCKS.items():
        compile_file(HERE/name, extras, hashes=True, digest=digest, requirements=None if extras is not None else build)
    print(f"wrote {CONSTRAINTS} and {', '.join(LOCKS)} in {HERE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
