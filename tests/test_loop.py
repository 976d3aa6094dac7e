"""The promotion gate and the model registry through the real CLI: the zero-shot model published into an empty
registry; a model trained on the cartoon sample (three breeds) refused with its reasons, then forced and marked so;
`models` lists both; `rollback` returns to the zero-shot model; `serve` without --model-dir serves the registry's
current version. The gate's photos: the real Stanford dev photos (3 per breed held out) when present, else the sample."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import httpx
import pytest

from conftest import DEV_PHOTOS, Server, run_cli

CARTOON = """data:
  sample: {breeds: [pug, beagle, chihuahua], images_per_breed: 12, image_size: 96}
augment:
  offline: []
  online: {size: 64}
train: {epochs: 2, freeze_epochs: 1, batch_size: 8, mode: local}
export: {int8: false}
"""


@pytest.fixture(scope="module")
def project(tmp_path_factory, zero_shot_dir) -> Path:
    "A project with a model trained and exported on the cartoon sample, and the gate's photos prepared in gate_data/."
    root = tmp_path_factory.mktemp("loop")
    (root/"params.yaml").write_text(CARTOON)
    for step in ("prepare", "train", "evaluate", "export"):
        res = run_cli(step, "-q", cwd=root, timeout=600)
        assert res.returncode == 0, f"{step}: {res.stderr[-2000:]}"
    real = DEV_PHOTOS/"Images"
    source = ["-S", "data.source=folder", "-S", f"data.path={real}", "-S", "data.test_pct=0.3", "-S", "data.valid_pct=0.1"] \
        if real.is_dir() else []
    res = run_cli("prepare", "-q", "--out", root/"gate_data", *source, cwd=root, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    return root


def test_promote_refuses_the_cartoon_model_and_rollback_returns(project, zero_shot_dir):
    data = ["--data", project/"gate_data"]
    first = run_cli("promote", zero_shot_dir, *data, "--against", zero_shot_dir, cwd=project, timeout=600)
    assert first.returncode == 0 and "## Promotion: published" in first.stdout, first.stdout + first.stderr
    zero_version = json.loads((zero_shot_dir/"model_card.json").read_text())["model_version"]

    cartoon = run_cli("promote", project/"models"/"serving", *data, "--out", "reports/promotion.md", cwd=project, timeout=600)
    assert cartoon.returncode == 1 and "## Promotion: REFUSED" in cartoon.stdout, cartoon.stdout + cartoon.stderr
    failed = {line.split("|")[2].strip() for line in cartoon.stdout.splitlines() if line.startswith("| ❌")}
    assert {"knows every breed", "top-1", "log loss"} <= failed, cartoon.stdout
    assert (project/"reports"/"promotion.md").read_text() == cartoon.stdout
    registry = json.loads((project/"models"/"registry"/"registry.json").read_text())
    assert registry["current"] == zero_version and len(registry["versions"]) == 1   # refused: nothing published

    forced = run_cli("promote", project/"models"/"serving", *data, "--force", cwd=project, timeout=600)
    assert forced.returncode == 0 and "published (forced past failed checks)" in forced.stdout, forced.stdout
    listed = json.loads(run_cli("models", "--json", cwd=project).stdout)
    assert [(m["current"], m["forced"]) for m in listed] == [("✓", "forced"), ("", "")]
    again = run_cli("promote", project/"models"/"serving", *data, cwd=project)
    assert again.returncode == 2 and "already the current version" in again.stderr

    back = run_cli("rollback", cwd=project)
    assert back.returncode == 0 and zero_version in back.stdout
    s = Server("--store-url", f"sqlite:///{project}/p.db", "--no-ui", cwd=project)   # no --model-dir: the registry's current
    try:
        model = httpx.get(s.url + "/model").json()
        assert model["model_version"] == zero_version and "registry" in model["selection_reason"], model
    finally:
        s.stop()
    twice = run_cli("rollback", cwd=project)
    assert twice.returncode == 2 and "nothing to roll back to" in twice.stderr and "Traceback" not in twice.stderr


def test_promote_usage_errors(project, tmp_path):
    res = run_cli("promote", tmp_path, "--registry", tmp_path/"r", cwd=project)
    assert res.returncode == 2 and "is not a serving folder" in res.stderr
    empty = run_cli("models", "--registry", tmp_path/"r", cwd=project)
    assert empty.returncode == 0 and "nothing published" in empty.stdout
    shutil.copytree(project/"models"/"serving", tmp_path/"m")
    res = run_cli("promote", tmp_path/"m", "--registry", tmp_path/"r", "--data", tmp_path, cwd=project)
    assert res.returncode == 2 and "not a prepared dataset" in res.stderr and "Traceback" not in res.stderr
