"""The checks the data and model workflows run (`dog-breed data-report`, `dog-breed check-model`), end to end through
the real CLI: exit 0 when a dataset or model passes, 1 with the failing check named when it does not, 2 for a usage
error; the report written whole to --out."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from conftest import run_cli

pytestmark = pytest.mark.slow   # `dog-breed` runs in processes: not the fast tier (test_library has the in-process data report)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Path:
    "A project whose sample (12 photos per breed) was prepared, one photo replaced by a text file first."
    root = tmp_path_factory.mktemp("project")
    (root/"params.yaml").write_text("data:\n  workers: 2\n  sample:\n    images_per_breed: 12\naugment:\n  offline: []\n")
    assert run_cli("sample", "--quiet", cwd=root).returncode == 0
    first = sorted((root/"data"/"raw"/"sample"/"train").glob("*.jpg"))[0]
    first.write_text("not a photo")                      # prepare quarantines it, with its reason
    res = run_cli("prepare", "--quiet", cwd=root)
    assert res.returncode == 0, res.stderr
    return root


def test_data_report_passes_and_writes_the_report(prepared):
    res = run_cli("data-report", "--out", "reports/data_report.md", cwd=prepared)
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout == (prepared/"reports"/"data_report.md").read_text()
    assert "## Data report: passed" in res.stdout and "1 of 60 photos (1.7%) set aside" in res.stdout
    assert not list((prepared/"reports").glob(".*tmp"))     # written whole: no temporary file left behind


def test_data_report_fails_on_the_quarantine_share(prepared):
    res = run_cli("data-report", "--max-quarantine-share", "0.01", cwd=prepared)
    assert res.returncode == 1
    assert "## Data report: FAILED" in res.stdout and "| ❌ | quarantine |" in res.stdout


def test_data_report_on_a_folder_that_is_not_a_dataset(tmp_path):
    res = run_cli("data-report", "--data", tmp_path, cwd=tmp_path)
    assert res.returncode == 2 and res.stderr.startswith("dog-breed: error:") and "not a prepared dataset" in res.stderr
    assert "Traceback" not in res.stderr


def test_check_model_against_the_served_model(prepared, zero_shot_dir):
    res = run_cli("check-model", zero_shot_dir, "--served", zero_shot_dir, "--out", "reports/model_check.md", cwd=prepared)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "## Model check: passed" in res.stdout and "| ✅ | speed vs the served model |" in res.stdout
    assert (prepared/"reports"/"model_check.md").read_text() == res.stdout


def test_check_model_fails_a_damaged_artifact(prepared, zero_shot_dir, tmp_path):
    damaged = tmp_path/"damaged"
    shutil.copytree(zero_shot_dir, damaged)
    with open(damaged/"model.onnx", "r+b") as f:           # one byte changed: still loads, no longer the card's file
        f.seek(-1, 2); last = f.read(1); f.seek(-1, 2); f.write(bytes([last[0] ^ 1]))
    res = run_cli("check-model", damaged, "--baseline", zero_shot_dir, cwd=prepared)   # --served's old name still works
    assert res.returncode == 1, res.stdout + res.stderr
    assert "| ❌ | integrity |" in res.stdout and "fetch the artifact again" in res.stdout


def test_check_model_fails_a_model_worse_than_its_card(prepared, zero_shot_dir, tmp_path):
    boastful = tmp_path/"boastful"
    shutil.copytree(zero_shot_dir, boastful)
    card = json.loads((boastful/"model_card.json").read_text())
    card["metrics"] = {"split": "test", "data_source": "sample", "model": {"top1": 0.95}}
    (boastful/"model_card.json").write_text(json.dumps(card))
    res = run_cli("check-model", boastful, cwd=prepared)
    assert res.returncode == 1 and "| ❌ | accuracy vs its card |" in res.stdout, res.stdout


def test_check_model_usage_errors(prepared, zero_shot_dir):
    res = run_cli("check-model", prepared, cwd=prepared)
    assert res.returncode == 2 and "is not a serving folder" in res.stderr and "Traceback" not in res.stderr
    res = run_cli("check-model", zero_shot_dir, "--baseline", prepared, cwd=prepared)
    assert res.returncode == 2 and f"--served {prepared} is not a serving folder" in res.stderr
