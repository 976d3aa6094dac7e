"""Drift detection for real: a SQLite prediction store filled by the real model, `dog-breed drift` run as a
command (exit codes, report, summary, the verdict recorded in the store) and as the job beside a server
(`--every`), `dog-breed serve` answering GET /drift and exporting the drift gauges from what the job recorded —
the server itself computes nothing — and the example Prometheus alert rules checked against the metrics the server
really exports."""
from __future__ import annotations

import json
import re
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
import yaml
from PIL import Image

from conftest import REPO, Server, dog_breed_command, jpeg_bytes, photo, run_cli

BREEDS = ["pug", "beagle", "golden_retriever", "border_collie"]


def typical_photos(n: int, seed: int) -> list[Image.Image]:
    "Generated 'users' photos: drawn dogs of a few breeds."
    return [photo(BREEDS[i % len(BREEDS)], seed * 10_000 + i, (320, 256)) for i in range(n)]


def darker(img: Image.Image) -> Image.Image:
    return Image.eval(img, lambda v: int(v * 0.5))


@pytest.fixture(scope="module")
def reference_dir(tmp_path_factory) -> Path:
    "A folder of typical photos: the reference the zero-shot model lacks."
    d = tmp_path_factory.mktemp("reference")
    for i, img in enumerate(typical_photos(80, seed=1)): img.save(d/f"{i}.jpg", quality=92)
    return d


def fill_store(db: Path, zero_shot_dir: Path, images: list[Image.Image]):
    "Log predictions of `images` as the API does (real model, real SQLite store)."
    from dog_breed_classifier.inference import Predictor
    from dog_breed_classifier.monitoring import PredictionStore
    store = PredictionStore(f"sqlite:///{db}")
    uploads = [jpeg_bytes(im, quality=92) for im in images]   # as users send them: JPEG files, like the reference's
    for answer in Predictor.from_dir(zero_shot_dir).predict(uploads, embeddings=True): store.add(answer, source="batch")


from dog_breed_classifier.monitoring import PredictionStore  # noqa: E402  (after the helpers the fixtures use)

pytestmark = pytest.mark.slow   # real servers and the drift job: not the fast tier


def drift_cli(tmp: Path, db: Path, *args):
    return run_cli("drift", "--store-url", f"sqlite:///{db}", "--out", tmp/"drift.html", "--quiet", *args, cwd=tmp)


def test_drift_command_exits_by_verdict_and_writes_report_and_summary(tmp_path, zero_shot_dir, reference_dir):
    db = tmp_path/"predictions.db"
    fill_store(db, zero_shot_dir, typical_photos(60, seed=2))
    common = ("--reference", reference_dir, "--model-dir", zero_shot_dir, "--window", 60)
    clean = drift_cli(tmp_path, db, *common)
    assert clean.returncode == 0, clean.stderr
    assert "drift: none" in clean.stdout
    summary = json.loads((tmp_path/"drift.json").read_text())
    assert summary["status"] == "no_drift" and summary["current"]["rows"] == 60 and summary["reference"]["rows"] == 80
    assert summary["columns_compared"] == 17 and summary["embedding_drift_score"] is not None
    assert "<html" in (tmp_path/"drift.html").read_text()[:5000].lower()
    recorded = PredictionStore(f"sqlite:///{db}").latest_drift_check(report=True)   # what servers will serve
    assert recorded["check_id"] == summary["check_id"] and recorded["status"] == "no_drift"
    assert recorded["report_html"] == (tmp_path/"drift.html").read_text()

    fill_store(db, zero_shot_dir, [darker(im) for im in typical_photos(60, seed=3)])   # the newest 60 are darker
    drifted = drift_cli(tmp_path, db, *common)
    assert drifted.returncode == 1, drifted.stdout + drifted.stderr
    assert "drift: DETECTED" in drifted.stdout and "stat_brightness" in drifted.stdout
    summary = json.loads((tmp_path/"drift.json").read_text())
    assert summary["drift_detected"] is True and "stat_mean" in summary["drifted_columns"]
    assert drift_cli(tmp_path, db, *common, "--no-fail").returncode == 0

    few = drift_cli(tmp_path, db, *common[:-1], 20)   # --window 20 < drift.min_rows
    assert few.returncode == 0 and "not enough data" in few.stdout


def test_drift_command_usage_errors_are_one_line(tmp_path, zero_shot_dir, reference_dir):
    db = tmp_path/"predictions.db"
    fill_store(db, zero_shot_dir, typical_photos(5, seed=4))
    cases = {
        "has no drift reference": drift_cli(tmp_path, db, "--model-dir", zero_shot_dir),                  # zero-shot: no reference
        "no prediction store at": drift_cli(tmp_path, tmp_path/"missing.db", "--reference", reference_dir),
        "is not an ISO 8601 time": drift_cli(tmp_path, db, "--reference", reference_dir, "--since", "yesterday"),
        "does not exist": drift_cli(tmp_path, db, "--reference", tmp_path/"nowhere"),
        "--window must be at least 1": drift_cli(tmp_path, db, "--reference", reference_dir, "--window", 0),
    }
    for expected, res in cases.items():
        assert res.returncode == 2, (expected, res.stdout, res.stderr)
        assert res.stderr.startswith("dog-breed: error:") and expected in res.stderr and "Traceback" not in res.stderr, res.stderr
    assert not (tmp_path/"missing.db").exists()   # a mistyped store is not created empty


@pytest.fixture(scope="module")
def drift_server(tmp_path_factory, zero_shot_dir):
    d = tmp_path_factory.mktemp("drift_serve")
    s = Server("--model-dir", zero_shot_dir, "--store-url", f"sqlite:///{d}/predictions.db", "--drift-refresh", 1, cwd=d)
    s.db = d/"predictions.db"
    yield s
    s.stop()


def metric(text: str, name: str) -> float:
    m = re.search(rf"^{re.escape(name)} (\S+)$", text, re.M)
    assert m, f"{name} not in /metrics"
    return float(m.group(1))


def wait_for_metric(url: str, line: str, seconds: float = 60):
    deadline = time.time() + seconds   # the server re-reads the job's verdict every second (--drift-refresh 1)
    while line not in httpx.get(f"{url}/metrics").text:
        assert time.time() < deadline, f"{line} never appeared in /metrics"; time.sleep(0.5)


def test_drift_endpoint_and_gauges_serve_what_the_drift_job_recorded(drift_server, zero_shot_dir, reference_dir, tmp_path):
    url = drift_server.url
    first = httpx.get(f"{url}/drift", timeout=60).json()
    assert first["status"] == "not_checked" and "dog-breed drift --every" in first["message"]
    wait_for_metric(url, 'dogbreed_drift_status{status="not_checked"} 1.0')
    for img in [darker(im) for im in typical_photos(60, seed=5)]:
        r = httpx.post(f"{url}/predict", files={"file": ("x.jpg", jpeg_bytes(img), "image/jpeg")}, timeout=60)
        assert r.status_code == 200, r.text
    job = drift_cli(tmp_path, drift_server.db, "--reference", reference_dir, "--model-dir", zero_shot_dir, "--window", 60)
    assert job.returncode == 1 and "drift: DETECTED" in job.stdout, job.stdout + job.stderr
    summary = httpx.get(f"{url}/drift", timeout=30).json()
    assert summary["status"] == "drift" and summary["current"]["rows"] == 60 and "stat_mean" in summary["drifted_columns"]
    assert summary["check_id"] == json.loads((tmp_path/"drift.json").read_text())["check_id"]
    assert summary["served_model_version"] == summary["current"]["model_version"]
    wait_for_metric(url, "dogbreed_drift_detected 1.0")
    text = httpx.get(f"{url}/metrics").text
    assert metric(text, "dogbreed_drift_window_rows") == 60 and metric(text, "dogbreed_drift_share") >= 0.3
    assert abs(metric(text, "dogbreed_drift_last_check_timestamp_seconds") - time.time()) < 300
    html = httpx.get(f"{url}/drift", params=dict(format="html"), timeout=60)
    assert html.status_code == 200 and html.headers["content-type"].startswith("text/html") and "stat_brightness" in html.text


def test_the_drift_job_keeps_checking_until_stopped(drift_server, zero_shot_dir, reference_dir, tmp_path):
    "`dog-breed drift --every`: a new verdict each round (the server answers the newest), a clean exit on SIGTERM."
    before = httpx.get(f"{drift_server.url}/drift", timeout=30).json().get("check_id", 0)
    job = subprocess.Popen([*dog_breed_command(), "drift", "--store-url", f"sqlite:///{drift_server.db}", "--reference",
                            str(reference_dir), "--model-dir", str(zero_shot_dir), "--window", "60", "--every", "1",
                            "--out", str(tmp_path/"drift.html"), "--quiet"], cwd=tmp_path, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 120
        while httpx.get(f"{drift_server.url}/drift", timeout=30).json().get("check_id", 0) < before + 2:
            assert job.poll() is None and time.time() < deadline, job.stderr.read() if job.poll() is not None else "no new checks"
            time.sleep(0.5)
    finally:
        job.send_signal(signal.SIGTERM)   # as a container runtime stops it
        out, err = job.communicate(timeout=60)
    assert job.returncode == 0 and "checking drift every 1 s" in out and "Traceback" not in err, out + err
    assert out.count("drift: DETECTED") >= 2


@pytest.mark.parametrize("params", [dict(format="pdf"), dict(format="")])
def test_bad_drift_queries_are_422_naming_the_parameter(drift_server, params):
    r = httpx.get(f"{drift_server.url}/drift", params=params, timeout=30)
    assert r.status_code == 422 and r.json()["reason"] == "bad_query" and "format" in r.json()["detail"], r.text


def test_alert_rules_use_metrics_the_server_exports(drift_server):
    rules = yaml.safe_load((REPO/"deploy"/"prometheus"/"alerts.yml").read_text())
    exprs = [r["expr"] for g in rules["groups"] for r in g["rules"]]
    assert all(r.get("alert") and r.get("annotations", {}).get("summary") for g in rules["groups"] for r in g["rules"])
    exported = {line.split("{")[0].split(" ")[0] for line in httpx.get(f"{drift_server.url}/metrics").text.splitlines()
                if line and not line.startswith("#")}
    used = {name for e in exprs for name in re.findall(r"\b(dogbreed_[a-z0-9_]+)", e)}
    assert used and used <= exported, used - exported
    config = yaml.safe_load((REPO/"deploy"/"prometheus"/"prometheus.yml").read_text())
    assert config["rule_files"] == ["alerts.yml"]


def test_a_store_from_before_the_new_statistics_is_upgraded_in_place(tmp_path, zero_shot_dir, reference_dir):
    "A log written by the previous version (7 statistics) keeps its rows and gains the new columns when opened."
    db = tmp_path/"old.db"
    with sqlite3.connect(db) as c:
        c.execute("create table predictions (id varchar(32) primary key, created_at datetime not null, model_version varchar(80) not null, "
                  "breed varchar(64), confidence float, top_k text not null, is_dog boolean not null, dog_probability float not null, "
                  "latency_ms float not null, " + ", ".join(f"stat_{n} float not null" for n in
                  ("mean", "std", "median", "min", "max", "entropy", "edge_density")) +
                  ", width integer not null, height integer not null, bytes integer, content_sha256 varchar(64), embedding blob, "
                  "source varchar(16) not null, archived_as varchar(200))")
        c.execute("insert into predictions values ('old1', '2026-01-01 00:00:00', 'v0', 'pug', 0.9, '[{\"breed\": \"pug\", \"probability\": 0.9}]', "
                  "1, 0.99, 5.0, 100, 50, 100, 0, 255, 7.5, 0.1, 640, 480, null, null, null, 'api', null)")
    fill_store(db, zero_shot_dir, typical_photos(3, seed=6))
    with sqlite3.connect(db) as c:
        assert c.execute("select count(*) from predictions").fetchone()[0] == 4
        assert c.execute("select stat_sharpness from predictions where id = 'old1'").fetchone()[0] is None
        assert c.execute("select count(stat_sharpness) from predictions").fetchone()[0] == 3


def test_a_reference_from_another_model_compares_what_it_can_and_says_so():
    "Embeddings of another width (another architecture) are not compared; statistics and predictions still are."
    import pandas as pd

    from dog_breed_classifier.drift import PREDICTION_COLUMNS, DriftData, drift_decision
    from dog_breed_classifier.images import STAT_COLUMNS
    rng = np.random.default_rng(0)
    def rows(n, width):
        frame = pd.DataFrame(rng.normal(100, 10, (n, len(STAT_COLUMNS))), columns=STAT_COLUMNS)
        frame["breed"], frame["confidence"], frame["is_dog"] = rng.choice(["pug", "beagle"], n), rng.random(n), "dog"
        return DriftData(frame=frame[[*STAT_COLUMNS, *PREDICTION_COLUMNS]], embeddings=rng.normal(size=(n, width)).astype(np.float32), source="generated")
    decision = drift_decision(rows(200, 1280), rows(100, 1024))
    assert decision["status"] == "no_drift" and decision["embedding_drift_score"] is None
    assert any("1280" in n and "1024" in n for n in decision["notes"]), decision["notes"]
