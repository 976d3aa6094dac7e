"""The prediction log on both backends it supports, for real: SQLite (the default) and PostgreSQL (a throwaway
server started by the `postgres_server` fixture). The same tests run on each; then two `dog-breed serve` processes
write to one PostgreSQL at once and every acknowledged prediction has its row."""
from __future__ import annotations

import concurrent.futures as cf
import datetime as dt
import json
import subprocess
import sys
import time

import httpx
import numpy as np
import pytest
import sqlalchemy as sa

from conftest import REPO, Server, jpeg_bytes, new_postgres_database, photo
from dog_breed_classifier.images import IMAGE_STAT_NAMES
from dog_breed_classifier.monitoring import NO_DOG, PredictionStore, StoreError, UnknownPredictionError, live_accuracy

pytestmark = pytest.mark.slow   # a real PostgreSQL server: not the fast tier

REPORTS = REPO/"reports"/"reliability"


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, tmp_path):
    if request.param == "sqlite": return f"sqlite:///{tmp_path}/predictions.db"
    return new_postgres_database(request.getfixturevalue("postgres_server"))


def answer(i: int, version: str = "m-1") -> dict:
    "A prediction as `Predictor.predict` returns it."
    rng = np.random.default_rng(i)
    return dict(model_version=version, breed="pug", display_name="Pug", confidence=0.9, is_dog=True, dog_probability=0.97,
                top_k=[dict(breed="pug", probability=0.9)], latency_ms=12.5, width=320, height=240, format="JPEG", notes=[],
                image_stats={n: float(rng.uniform(0, 1)) for n in IMAGE_STAT_NAMES},
                embedding=rng.normal(size=64).astype(np.float16))


def test_round_trip(store_url):
    store = PredictionStore(store_url)
    assert store.writable()
    ids = [store.add(answer(i, "m-1" if i < 6 else "m-2"), content=b"x" * i) for i in range(10)]
    assert store.count() == 10
    recent = store.recent()
    assert list(recent.id) == ids[::-1]                           # newest first
    assert recent.embedding.iloc[0].dtype == np.float32 and recent.embedding.iloc[0].shape == (64,)
    np.testing.assert_allclose(recent.embedding.iloc[-1], answer(0)["embedding"].astype(np.float32))
    assert len(store.recent(limit=3)) == 3 and set(store.recent(model_version="m-2").id) == set(ids[6:])
    assert len(store.recent(since=dt.datetime.now(dt.timezone.utc) + dt.timedelta(minutes=1))) == 0
    assert PredictionStore(store_url).count() == 10              # durable: a new connection sees every row


def test_feedback_round_trip_and_racing_words(store_url):
    """Feedback on both backends: stored against its prediction, a second word replaces the first, eight racing words on
    one prediction leave exactly one row, and live accuracy reads them per model version."""
    store = PredictionStore(store_url)
    ids = [store.add(answer(i, "m-1" if i < 6 else "m-2")) for i in range(10)]
    assert [store.add_feedback(i, "pug")["verdict"] for i in ids[:5]] == ["confirmed"] * 5
    assert store.add_feedback(ids[0], "beagle")["replaced"] is True
    with cf.ThreadPoolExecutor(8) as pool: list(pool.map(lambda b: store.add_feedback(ids[6], b), ["beagle", NO_DOG] * 4))
    words = store.feedback()
    assert len(words) == 6 and set(words.prediction_id) == set(ids[:5]) | {ids[6]}
    by_version = {r["model_version"]: r for r in live_accuracy(words)}
    assert (by_version["m-1"]["feedback"], by_version["m-1"]["confirmed"], by_version["m-2"]["confirmed"]) == (5, 4, 0)
    with pytest.raises(UnknownPredictionError): store.add_feedback("0" * 32, "pug")


def test_concurrent_writers_lose_nothing(store_url):
    store = PredictionStore(store_url)
    with cf.ThreadPoolExecutor(8) as pool: ids = list(pool.map(lambda i: store.add(answer(i)), range(400)))
    assert store.count() == 400 and set(store.recent().id) == set(ids)


def test_an_older_store_gets_its_missing_columns(store_url):
    engine = sa.create_engine(store_url)
    with engine.begin() as conn:   # a log written by an early version: fewer columns
        conn.exec_driver_sql("CREATE TABLE predictions (id VARCHAR(32) PRIMARY KEY, created_at TIMESTAMP WITH TIME ZONE NOT NULL, "
                             "model_version VARCHAR(80) NOT NULL, breed VARCHAR(64))")
        conn.exec_driver_sql("INSERT INTO predictions (id, created_at, model_version, breed) "
                             "VALUES ('old1', '2026-01-01 00:00:00+00', 'm-0', 'beagle')")
    engine.dispose()
    store = PredictionStore(store_url)
    store.add(answer(1))
    assert store.count() == 2 and "old1" in set(store.recent().id)


def test_an_unreachable_store_is_a_clear_error_without_the_password(postgres_server):
    url = postgres_server.replace("dogbreed@", "dogbreed:hunter2@").rsplit(":", 1)[0] + ":1/nowhere"
    with pytest.raises(StoreError) as e: PredictionStore(url)
    assert "cannot open the prediction store" in str(e.value) and "hunter2" not in str(e.value) and "***" in str(e.value)


def test_two_servers_share_one_postgresql_and_lose_nothing(postgres_server, zero_shot_dir, tmp_path):
    url = new_postgres_database(postgres_server)
    PredictionStore(url)   # the schema, once: both servers then find it
    servers = [Server("--model-dir", zero_shot_dir, "--store-url", url, "--no-ui", cwd=tmp_path) for _ in range(2)]
    photos = [jpeg_bytes(photo(b, i, (240, 200))) for i, b in enumerate(["pug", "beagle", "chow", "papillon"] * 5)]
    try:
        with httpx.Client(timeout=60) as client, cf.ThreadPoolExecutor(8) as pool:
            def post(i):
                r = client.post(servers[i % 2].url + "/predict", files={"file": ("p.jpg", photos[i % len(photos)], "image/jpeg")})
                return r.status_code, r.json().get("prediction_id")
            results = list(pool.map(post, range(400)))
    finally:
        for s in servers: s.stop()
    store = PredictionStore(url)
    stored, acknowledged = set(store.recent().id), {pid for code, pid in results if code == 200}
    REPORTS.mkdir(parents=True, exist_ok=True)
    (REPORTS/"postgresql_two_writers.json").write_text(json.dumps(dict(
        servers=2, requests=len(results), acknowledged=len(acknowledged), rows=store.count(),
        acknowledged_missing=len(acknowledged - stored)), indent=1))
    assert [code for code, _ in results] == [200] * 400
    assert store.count() == 400 and stored == acknowledged


OPEN_AT_ONCE = """
import sys, time
from dog_breed_classifier.monitoring import PredictionStore
time.sleep(max(0.0, float(sys.argv[2]) - time.time()))   # every process starts opening at the same moment
PredictionStore(sys.argv[1])
"""


def test_servers_starting_together_on_an_empty_database_all_open_it(store_url):
    "Six processes creating the tables at the same moment (N replicas starting on an empty database): each opens the log."
    start = time.time() + 3
    procs = [subprocess.Popen([sys.executable, "-c", OPEN_AT_ONCE, store_url, str(start)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(6)]
    outcomes = [(p.wait(timeout=120), p.stderr.read()[-500:]) for p in procs]
    assert [code for code, _ in outcomes] == [0] * 6, outcomes
    assert PredictionStore(store_url).count() == 0
