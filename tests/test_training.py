"""`dog-breed train` / `evaluate` from the command line on tiny data, and the same training in two processes."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from conftest import run_cli
from dog_breed_classifier.core import DEFAULT_ARCH

pytestmark = pytest.mark.slow   # training runs: not the fast tier

TINY = """data:
  sample: {breeds: [pug, beagle, chihuahua], images_per_breed: 12, image_size: 96}
augment:
  offline: []
  online: {size: 64}
train: {epochs: 2, freeze_epochs: 1, batch_size: 8, mode: local}
"""


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    "A project with a tiny prepared dataset (64-pixel model input)."
    root = tmp_path_factory.mktemp("tiny")
    (root/"params.yaml").write_text(TINY)
    res = run_cli("prepare", "-q", cwd=root)
    assert res.returncode == 0, res.stderr
    return root


def test_train_then_evaluate_from_the_command_line(tiny):
    res = run_cli("train", "-q", cwd=tiny)
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith(f"trained {DEFAULT_ARCH} on 24 photos of 3 breeds")
    meta = json.loads((tiny/"models"/"trained"/"model.json").read_text())
    assert meta["classes"] == ["chihuahua", "beagle", "pug"] and meta["mean"] == [0.5] * 3 and meta["input_size"] == 64
    assert meta["best_valid_loss"] <= meta["zero_shot_valid_loss"]
    res = run_cli("evaluate", "-q", cwd=tiny)
    assert res.returncode == 0, res.stderr
    assert "zero_shot" in res.stdout and "ImageNet" in res.stdout
    metrics = json.loads((tiny/"reports"/"metrics.json").read_text())
    assert metrics["model"]["photos"] == 6 and 0 <= metrics["model"]["top1"] <= 1


def test_zero_epochs_gives_the_zero_shot_model_through_the_same_outputs(tiny):
    res = run_cli("train", "-q", "-S", "train.epochs=0", "-S", "train.freeze_epochs=0", cwd=tiny)
    assert res.returncode == 0, res.stderr
    meta = json.loads((tiny/"models"/"trained"/"model.json").read_text())
    assert meta["zero_shot"] and meta["epochs_run"] == 0
    assert list(pd.read_csv(tiny/"models"/"trained"/"history.csv").phase) == ["zero-shot"]
    assert run_cli("evaluate", "-q", cwd=tiny).returncode == 0
    metrics = json.loads((tiny/"reports"/"metrics.json").read_text())
    same = ("top1", "top5", "photos", "uncalibrated")   # the same model; only the temperatures may differ
    assert {k: metrics["model"][k] for k in same} == {k: metrics["zero_shot"][k] for k in same} and metrics["model_is_zero_shot"]


def test_training_mistakes_are_one_line(tiny):
    res = run_cli("train", "-q", "-S", "train.freeze_epochs=5", cwd=tiny)
    assert res.returncode == 2 and "cannot exceed train.epochs" in res.stderr and "Traceback" not in res.stderr
    res = run_cli("train", "-q", "-S", "model.arch=resnet18", cwd=tiny)
    assert res.returncode == 2 and "the architectures with a weight package are tf_efficientnet_lite0, " in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    res = run_cli("train", "-q", "-S", "model.arch=not_a_net", cwd=tiny)
    assert res.returncode == 2 and "is not a timm architecture" in res.stderr and "Traceback" not in res.stderr


def test_evaluate_before_train_says_what_to_do(tmp_path):
    (tmp_path/"params.yaml").write_text(TINY)
    assert run_cli("prepare", "-q", cwd=tmp_path).returncode == 0
    res = run_cli("evaluate", "-q", cwd=tmp_path)
    assert res.returncode == 2 and "run `dog-breed train`" in res.stderr


@pytest.mark.slow
def test_two_processes_train_together(tiny):
    "torchrun starts 2 CPU processes (gloo); each says who it is; rank 0 writes the model."
    (tiny/"models"/"trained"/"model.json").unlink(missing_ok=True)
    torchrun = Path(sys.executable).parent/"torchrun"
    env = {**os.environ, "DO_NOT_TRACK": "1", "OMP_NUM_THREADS": "1"}
    res = subprocess.run([str(torchrun), "--nproc_per_node", "2", "-m", "dog_breed_classifier.cli", "train", "-q"],
                         cwd=tiny, capture_output=True, text=True, timeout=600, env=env)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    out = res.stdout + res.stderr
    assert "rank 0 of 2 (gloo)" in out and "rank 1 of 2 (gloo)" in out
    meta = json.loads((tiny/"models"/"trained"/"model.json").read_text())
    assert meta["processes"] == 2 and meta["epochs_run"] == 2


def test_recipe_options_mixup_label_smoothing_early_stopping(tiny, tmp_path):
    res = run_cli("train", "-q", "-S", "train.mixup=0.4", "-S", "train.label_smoothing=0.1", "-S", "train.l2sp=1.0",
                  "-S", "train.early_stopping_patience=1", "-S", "train.epochs=4", "-S", "train.freeze_epochs=2", cwd=tiny)
    assert res.returncode == 0, res.stderr
    meta = json.loads((tiny/"models"/"trained"/"model.json").read_text())
    assert meta["params"]["train"]["mixup"] == 0.4 and 1 <= meta["epochs_run"] <= 4
