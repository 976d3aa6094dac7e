"""The pinned installs stay true: the constraints file and the hashed locks match pyproject.toml (no network: a digest
of what they were made from), every documented install goes through them, and the linters pre-commit runs are the
ones CI installs. `pytest -k lock` runs these."""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from conftest import REPO

REQUIREMENTS = REPO/"requirements"
CONSTRAINT = "-c requirements/constraints.txt"


def pins(path: Path) -> dict[str, str]:
    "name → `version ; marker` of every pinned requirement in a lock or constraints file."
    found = re.findall(r"^([A-Za-z0-9_.\-\[\]]+)==([^\s\\\\#]+)(?:\s*;\s*([^\\\\#\n]+))?", path.read_text(), re.M)
    return {f"{name.lower()};{(marker or '').strip()}": version for name, version, marker in found}


def lock_check(folder: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(folder/"requirements"/"lock.py"), "--check"], capture_output=True, text=True)


def test_lock_files_match_pyproject():
    res = lock_check(REPO)
    assert res.returncode == 0, res.stderr


def test_lock_is_stale_once_a_dependency_is_added_without_relocking(tmp_path):
    shutil.copytree(REQUIREMENTS, tmp_path/"requirements")
    pyproject = (REPO/"pyproject.toml").read_text()
    (tmp_path/"pyproject.toml").write_text(pyproject.replace('    "tqdm>=4.60",\n', '    "tqdm>=4.60",\n    "rich>=13",\n', 1))
    res = lock_check(tmp_path)
    assert res.returncode == 1 and "stale: requirements/constraints.txt" in res.stderr, res.stderr
    assert "stale: requirements/serve-openvino.lock" in res.stderr and "python requirements/lock.py" in res.stderr


def test_hashed_locks_pin_every_file_and_agree_with_the_constraints():
    constraints = pins(REQUIREMENTS/"constraints.txt")
    for name in ("serve-openvino.lock", "serve-onnxruntime.lock", "drift.lock"):
        text = (REQUIREMENTS/name).read_text()
        locked = pins(REQUIREMENTS/name)
        assert locked, name
        for block in re.split(r"\n(?=[A-Za-z0-9_.\-]+==)", text.split("\n", 2)[2]):
            assert "--hash=sha256:" in block, f"{name}: no hash for {block.splitlines()[0]}"
        versions = lambda pinned, name: {v for k, v in pinned.items() if k.split(";")[0] == name}   # markers may differ
        differ = {k: v for k, v in locked.items() if v not in versions(constraints, k.split(";")[0])}
        assert not differ, f"{name} and constraints.txt pin different versions: {differ}"
    assert not any(k.startswith(("evidently;", "onnxruntime;", "torch;")) for k in pins(REQUIREMENTS/"serve-openvino.lock"))
    assert not any(k.startswith(("evidently;", "openvino;")) for k in pins(REQUIREMENTS/"serve-onnxruntime.lock"))


def test_lock_torch_pin_accepts_the_cpu_build():
    "torch==X matches X+cpu (a public version ignores local labels): the pipeline image's CPU wheels fit the pin."
    from packaging.specifiers import SpecifierSet
    torch = pins(REQUIREMENTS/"constraints.txt")["torch;"]
    assert f"{torch}+cpu" in SpecifierSet(f"=={torch}")


def install_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if re.search(r"pip install\b.*(-e |\.\[|\"\.\[|'\.\[)", line)]


def test_every_documented_install_goes_through_the_lock_files():
    "README, .ci/run, the workflows and the pipeline image install the project with the constraints file."
    sources = [REPO/"README.md", REPO/"nbs"/"index.ipynb", REPO/".ci"/"run", REPO/"Dockerfile.train",
               *sorted((REPO/".github"/"workflows").glob("*.yaml"))]
    checked = 0
    for path in sources:
        for line in install_lines(path.read_text()):
            if path.name == "test.yaml" and "--upgrade" in line: continue   # the `latest` job: unconstrained on purpose
            assert CONSTRAINT in line or "requirements/constraints.txt" in line, f"{path.name}: {line.strip()}"
            checked += 1
    assert checked >= 8, checked
    dockerfile = (REPO/"Dockerfile").read_text()
    assert '--require-hashes --no-deps -r "requirements/serve-${RUNTIME}.lock"' in dockerfile
    assert "ARG BASE_IMAGE=python:3.11-slim-bookworm@sha256:" in dockerfile


def test_pre_commit_runs_the_linter_versions_ci_locks():
    config = yaml.safe_load((REPO/".pre-commit-config.yaml").read_text())
    ruff = next(r for r in config["repos"] if r["repo"].endswith("ruff-pre-commit"))
    assert ruff["rev"] == "v" + pins(REQUIREMENTS/"constraints.txt")["ruff;"]
