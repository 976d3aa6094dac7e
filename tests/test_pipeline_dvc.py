"""The README's main job for real: `dvc repro` in a fresh copy of the repository, papermill executing the stage
notebooks; a second `dvc repro` is a no-op; `dvc push`/`pull` through the default local remote; `dvc exp run -S`."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import offline_images as images  # deploy/offline_images.py (conftest puts deploy/ on the path)
import pandas as pd
import pytest

from conftest import photo
from dog_breed_classifier.core import DEFAULT_ARCH

pytestmark = pytest.mark.slow


def sh(*args, cwd, check=True, timeout=900) -> subprocess.CompletedProcess:
    env = {**os.environ, "DO_NOT_TRACK": "1", "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    env.pop("DOG_BREED_ROOT", None)
    res = subprocess.run(list(args), cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)
    if check and res.returncode != 0:
        raise AssertionError(f"{' '.join(args)} exited {res.returncode}\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}")
    return res


@pytest.fixture(scope="module")
def clone(tmp_path_factory) -> Path:
    "The repository's committed and new (not ignored) files, in a fresh git repository."
    return images.fresh_clone(tmp_path_factory.mktemp("clone")/"repo")


def digest(folder: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        if p.is_file(): h.update(str(p.relative_to(folder)).encode()); h.update(p.read_bytes())
    return h.hexdigest()


def test_dvc_repro_runs_the_pipeline_through_papermill(clone):
    res = sh("dvc", "repro", cwd=clone)
    for stage in ("sample", "prepare", "train", "evaluate", "export"): assert f"Running stage '{stage}'" in res.stdout
    processed = clone/"data"/"processed"
    summary = json.loads((processed/"summary.json").read_text())
    assert summary["source"] == "sample" and summary["breeds"] == 5 and summary["images"]["used"] == 200
    labels = pd.read_csv(processed/"labels.csv", keep_default_na=False)
    assert set(labels.variant) == {"", "affine", "colour"} and all((processed/p).is_file() for p in labels.path)
    report = nbformat.read(clone/"reports"/"pipeline"/"prepare.ipynb", as_version=4)
    assert report.metadata.papermill.exception is None or report.metadata.papermill.exception is False
    assert any(c.get("outputs") for c in report.cells if c.cell_type == "code")
    assert any("image/jpeg" in o.get("data", {}) for c in report.cells if c.cell_type == "code" for o in c.outputs)
    meta = json.loads((clone/"models"/"trained"/"model.json").read_text())
    assert meta["arch"] == DEFAULT_ARCH and len(meta["classes"]) == 5 and meta["data"]["source"] == "sample"
    assert meta["calibration"]["temperature"] > 0 and meta["epochs_run"] == meta["params"]["train"]["epochs"]   # head on embeddings
    assert (clone/"wandb").is_dir()                                 # tracked offline by default
    metrics = json.loads((clone/"reports"/"metrics.json").read_text())
    assert {"model", "zero_shot", "caveat"} <= set(metrics) and metrics["model"]["photos"] == 30
    card = json.loads((clone/"models"/"serving"/"model_card.json").read_text())   # a servable models/serving
    assert card["classes"] == meta["classes"] and card["parity"]["top1_agreement"] == 1.0
    assert (card["input"]["size"], card["calibration"]["temperature"]) == (meta["input_size"], meta["calibration"]["temperature"])
    assert card["metrics"]["model"]["photos"] == 30 and card["training"]["data"]["source"] == "sample"
    assert card["int8"]["machine"] and {"openvino", "onnxruntime"} <= set(card["int8"])   # both runtimes' verdicts
    for runtime in ("openvino", "onnxruntime"):   # 30 photos cannot prove int8
        assert card["int8"][runtime]["kept"] is False and "too few validation photos" in card["int8"][runtime]["reason"]
    predicted = sh("dog-breed", "predict", "--json", "--model-dir", "models/serving",
                   *[f"data/processed/{p}" for p in labels[(labels.split == "test") & (labels.variant == "")].path[:3]], cwd=clone)
    assert [json.loads(line)["model_version"] for line in predicted.stdout.splitlines()] == [card["model_version"]] * 3
    for name in ("train", "evaluate", "export"):
        run = nbformat.read(clone/"reports"/"pipeline"/f"{name}.ipynb", as_version=4)
        assert not any(o.get("output_type") == "error" for c in run.cells if c.cell_type == "code" for o in c.outputs)
    shown = sh("dvc", "metrics", "show", "--json", cwd=clone).stdout
    assert "zero_shot" in shown
    assert sh("dvc", "plots", "show", "-o", str(clone/"plots_html"), cwd=clone).returncode == 0


def test_second_repro_is_a_no_op(clone):
    before = digest(clone/"data"/"processed")
    res = sh("dvc", "repro", cwd=clone)
    assert "Data and pipelines are up to date" in res.stdout, res.stdout
    assert digest(clone/"data"/"processed") == before
    assert "up to date" in sh("dvc", "status", cwd=clone).stdout


def test_a_relock_makes_the_model_stages_stale_and_the_card_names_the_libraries(clone):
    "The Python environment is a dependency: changed constraints re-run train and export (and what follows), not prepare."
    import importlib.metadata as md
    card = json.loads((clone/"models"/"serving"/"model_card.json").read_text())
    assert card["environment"]["torch"] == md.version("torch") and card["environment"]["numpy"] == md.version("numpy")
    constraints = clone/"requirements"/"constraints.txt"
    before = constraints.read_text()
    constraints.write_text(before.replace("\ntimm==", "\ntimm==0.0.0+other\n# timm==", 1))   # as a relock would change it
    try:
        status = sh("dvc", "status", "--json", cwd=clone).stdout
        changed = set(json.loads(status))
        assert {"train", "export"} <= changed and not {"sample", "prepare"} & changed, status
    finally:
        constraints.write_text(before)
    assert "up to date" in sh("dvc", "status", cwd=clone).stdout


def test_push_and_pull_through_the_default_local_remote(clone):
    before = digest(clone/"data"/"processed")
    sh("dvc", "push", cwd=clone)
    assert (clone/"dvc-storage").is_dir()          # the default remote: a folder, no network
    shutil.rmtree(clone/"data"/"processed"); shutil.rmtree(clone/".dvc"/"cache")
    sh("dvc", "pull", cwd=clone)
    assert digest(clone/"data"/"processed") == before


def test_export_writes_the_drift_reference_and_the_optional_drift_stage_reports(clone):
    card = json.loads((clone/"models"/"serving"/"model_card.json").read_text())
    assert card["drift_reference"]["rows"] == 60 and card["drift_reference"]["embeddings"] == [60, 1280]   # valid + test photos
    from dog_breed_classifier.inference import Predictor
    from dog_breed_classifier.monitoring import PredictionStore
    labels = pd.read_csv(clone/"data"/"processed"/"labels.csv", keep_default_na=False)
    served = Predictor.from_dir(clone/"models"/"serving")
    store = PredictionStore(f"sqlite:///{clone}/predictions.db")   # where `dog-breed serve` logs from the project folder
    train_photos = [clone/"data"/"processed"/p for p in labels[(labels.split == "train") & (labels.variant == "")].path[:70]]
    for answer in served.predict(train_photos, embeddings=True): store.add(answer)
    assert "up to date" in sh("dvc", "status", cwd=clone).stdout   # frozen: needs no store until unfrozen
    sh("dvc", "unfreeze", "drift", cwd=clone)
    try:
        res = sh("dvc", "repro", "-f", "-s", "drift", cwd=clone)   # -s: this stage only (-f alone retrains everything)
        assert "Running stage 'drift'" in res.stdout and "Running stage 'train'" not in res.stdout
        summary = json.loads((clone/"reports"/"drift.json").read_text())
        assert summary["reference"]["rows"] == 60 and summary["current"]["rows"] == 70
        assert summary["current"]["model_version"] == card["model_version"] and summary["status"] in ("drift", "no_drift")
        assert (clone/"reports"/"drift.html").stat().st_size > 10_000
    finally:
        sh("git", "checkout", "dvc.yaml", "dvc.lock", cwd=clone)


def test_exp_run_with_a_folder_source(clone, tmp_path):
    photos = tmp_path/"my photos"
    for breed in ["Beagle", "n02099601-golden_retriever"]:
        (photos/breed).mkdir(parents=True)
        for i in range(12): photo(breed.split("-")[-1].lower(), i).save(photos/breed/f"{i}.jpg")
    harvested = clone/"data"/"feedback"          # as `dog-breed harvest` writes it: users' labelled photos, training only
    for breed, seed in [("beagle", 100), ("beagle", 101), ("golden_retriever", 102), ("pug", 103)]:
        (harvested/breed).mkdir(parents=True, exist_ok=True); photo(breed, seed).save(harvested/breed/f"{seed:032x}.jpg")
    shutil.copy(photos/"Beagle"/"0.jpg", harvested/"beagle"/"copy.jpg")   # one of the source's own photos
    (harvested/"manifest.csv").write_text("prediction_id,breed\n")
    sh("dvc", "exp", "run", "-S", "data.source=folder", "-S", f"data.path={photos}", "-S", "augment.offline=[]",
       "-S", "train.epochs=1", "-S", "train.freeze_epochs=1", "-S", "train.lr=0.001", cwd=clone)
    labels = pd.read_csv(clone/"data"/"processed"/"labels.csv", keep_default_na=False)
    assert sorted(labels.breed.unique()) == ["beagle", "golden_retriever"] and len(labels) == 27
    extra = labels[labels.source.str.contains("feedback")]
    assert len(extra) == 3 and set(extra.split) == {"train"}        # never valid or test: the gate's photos stay the source's
    quarantine = pd.read_csv(clone/"data"/"processed"/"quarantine.csv")
    assert sorted(quarantine.reason) == ["breed_not_in_source", "duplicate"]
    meta = json.loads((clone/"models"/"trained"/"model.json").read_text())
    assert meta["classes"] == ["beagle", "golden_retriever"] and meta["params"]["train"]["lr"] == 0.001
    shown = sh("dvc", "exp", "show", "--csv", cwd=clone).stdout
    header, *rows = shown.splitlines()
    assert "data.source" in header and any(",folder," in r for r in rows), shown
