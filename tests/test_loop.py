"""The promotion gate and the model registry through the real CLI: the zero-shot model published into an empty
registry; a model trained on the cartoon sample (three breeds) refused with its reasons, then forced and marked so;
`models` lists both; `rollback` returns to the zero-shot model; `serve` without --model-dir serves the registry's
current version. The gate's photos: the real Stanford dev photos (3 per breed held out) when present, else the sample."""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import httpx
import pytest

from conftest import DEV_PHOTOS, Server, dog_breed_command, run_cli

pytestmark = pytest.mark.slow   # real servers, promotions and training: not the fast tier

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
    first = run_cli("promote", zero_shot_dir, *data, "--against", zero_shot_dir, cwd=project, timeout=600)   # --served's old name
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
    import os
    offline = run_cli("promote", tmp_path/"m", "--registry", tmp_path/"r", "--data", project/"gate_data", "--wandb-artifact",
                      "me/dogs/model-1:v3", cwd=project, env={**os.environ, "WANDB_MODE": "offline"})
    assert offline.returncode == 2 and "WANDB_MODE is offline" in offline.stderr and "nothing was published" in offline.stderr
    assert not (tmp_path/"r"/"registry.json").exists()


def version_of(folder: Path, suffix: str, out: Path, broken: bool = False) -> Path:
    "A copy of serving folder `folder` as another model version (same weights); `broken`: its model.onnx is garbage."
    shutil.copytree(folder, out)
    card = json.loads((out/"model_card.json").read_text())
    card["model_version"] += suffix
    (out/"model_card.json").write_text(json.dumps(card))
    if broken: (out/"model.onnx").write_bytes(b"not an onnx graph")
    return out


def test_a_forced_first_promotion_rolls_back_to_the_model_served_before(project, zero_shot_dir, tmp_path):
    registry = ["--registry", tmp_path/"r"]
    forced = run_cli("promote", project/"models"/"serving", "--data", project/"gate_data", "--served", zero_shot_dir, "--force",
                     *registry, cwd=project, timeout=600)
    assert forced.returncode == 0 and "published (forced" in forced.stdout, forced.stdout + forced.stderr
    zero_version = json.loads((zero_shot_dir/"model_card.json").read_text())["model_version"]
    state = json.loads((tmp_path/"r"/"registry.json").read_text())
    assert state["history"][0] == zero_version and len(state["history"]) == 2          # the served model recorded first
    assert all("@" in record["published_by"] for record in state["versions"].values())  # and who published
    back = run_cli("rollback", *registry, cwd=project)
    assert back.returncode == 0 and zero_version in back.stdout, back.stdout + back.stderr


def test_two_forced_promotions_at_the_same_moment_are_both_recorded(project, tmp_path):
    candidates = [version_of(project/"models"/"serving", f"-race{i}", tmp_path/f"c{i}") for i in (1, 2)]
    procs = [subprocess.Popen([*dog_breed_command(), "promote", str(c), "--data", str(project/"gate_data"), "--force",
                               "--registry", str(tmp_path/"r"), "--served", str(project/"models"/"serving")],
                              cwd=project, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for c in candidates]
    outs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    state = json.loads((tmp_path/"r"/"registry.json").read_text())   # valid JSON: never half-written
    versions = {json.loads((c/"model_card.json").read_text())["model_version"] for c in candidates}
    assert versions <= set(state["history"]) and versions <= set(state["versions"]), state["history"]
    assert state["current"] in versions and len(state["history"]) == 3   # the served model first, then both, in some order


def test_a_running_server_follows_the_registry_without_failing_a_request(zero_shot_dir, tmp_path):
    import signal
    import threading
    import time

    from conftest import jpeg_bytes, photo
    from dog_breed_classifier.served_model import ModelRegistry
    registry = ModelRegistry(tmp_path/"registry")
    v1 = registry.publish(version_of(zero_shot_dir, "-v1", tmp_path/"v1")).name
    v2 = version_of(zero_shot_dir, "-v2", tmp_path/"v2")
    v2_version = json.loads((v2/"model_card.json").read_text())["model_version"]
    s = Server("--registry", registry.path, "--reload-interval", "1", "--store-url", f"sqlite:///{tmp_path}/p.db", "--no-ui", cwd=tmp_path)
    statuses, stop, content = [], threading.Event(), jpeg_bytes(photo("pug", 1, (200, 180)))

    def load():
        with httpx.Client(base_url=s.url, timeout=60) as c:
            while not stop.is_set(): statuses.append(c.post("/predict", files={"file": ("p.jpg", content, "image/jpeg")}).status_code)

    def served_within(version: str, seconds: float = 6.0) -> float:
        t = time.monotonic()
        while time.monotonic() - t < seconds:
            if httpx.get(s.url + "/model").json()["model_version"] == version: return time.monotonic() - t
            time.sleep(0.1)
        raise AssertionError(f"{version} not served after {seconds} s: {httpx.get(s.url + '/health').json()}")

    workers = [threading.Thread(target=load) for _ in range(4)]
    try:
        for w in workers: w.start()
        assert served_within(v1) < 1
        registry.publish(v2); served_within(v2_version)                       # a promotion
        registry.rollback(); served_within(v1)                             # a rollback
        registry.publish(version_of(zero_shot_dir, "-broken", tmp_path/"broken", broken=True))
        time.sleep(3)
        health = httpx.get(s.url + "/health").json()
        assert health["model_version"] == v1 and "did not load" in health["reload_error"], health   # the old model goes on
        assert 'dogbreed_model_reloads_total{outcome="failed"}' in httpx.get(s.url + "/metrics").text
        registry.rollback(); registry.publish(v2); served_within(v2_version)    # back to a good version: the error clears
        assert httpx.get(s.url + "/health").json()["reload_error"] is None
    finally:
        stop.set()
        for w in workers: w.join()
        s.stop()
    assert len(statuses) > 50 and set(statuses) == {200}, sorted(set(statuses))
    import sqlite3
    with sqlite3.connect(tmp_path/"p.db") as c:
        versions = {v for (v,) in c.execute("select distinct model_version from predictions")}
    assert versions == {v1, v2_version}, versions                               # every row names a version that answered

    hup = Server("--registry", registry.path, "--reload-interval", "0", "--store-url", f"sqlite:///{tmp_path}/q.db", "--no-ui", cwd=tmp_path)
    try:
        registry.rollback(); time.sleep(1.5)
        assert httpx.get(hup.url + "/model").json()["model_version"] == v2_version   # interval 0: no polling …
        hup.proc.send_signal(signal.SIGHUP)
        s = hup; served_within(v1)                                                # … SIGHUP reloads
    finally:
        hup.stop()


def test_two_replicas_on_one_postgresql_each_follow_the_pointer(zero_shot_dir, tmp_path, postgres_server):
    import time

    from conftest import jpeg_bytes, new_postgres_database, photo
    from dog_breed_classifier.served_model import ModelRegistry
    url, registry = new_postgres_database(postgres_server), ModelRegistry(tmp_path/"registry")
    v1 = registry.publish(version_of(zero_shot_dir, "-r1", tmp_path/"r1")).name
    replicas = [Server("--registry", registry.path, "--reload-interval", "1", "--store-url", url, "--no-ui", cwd=tmp_path) for _ in range(2)]
    try:
        content = jpeg_bytes(photo("beagle", 2, (200, 180)))
        for r in replicas: assert httpx.post(r.url + "/predict", files={"file": ("b.jpg", content, "image/jpeg")}).status_code == 200
        v2 = registry.publish(version_of(zero_shot_dir, "-r2", tmp_path/"r2")).name
        deadline = time.monotonic() + 8
        while {httpx.get(r.url + "/model").json()["model_version"] for r in replicas} != {v2}:
            assert time.monotonic() < deadline, [httpx.get(r.url + "/health").json() for r in replicas]
            time.sleep(0.2)
        for r in replicas: assert httpx.post(r.url + "/predict", files={"file": ("b.jpg", content, "image/jpeg")}).status_code == 200
    finally:
        for r in replicas: r.stop()
    import sqlalchemy as sa
    engine = sa.create_engine(url)
    with engine.connect() as c:
        rows = sorted(c.exec_driver_sql("select model_version, count(*) from predictions group by model_version").fetchall())
    engine.dispose()
    assert rows == [(v1, 2), (v2, 2)], rows                   # one log, each row naming the version that answered
