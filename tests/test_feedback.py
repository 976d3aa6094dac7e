"""Feedback for real, against `dog-breed serve --archive DIR` with an API key and the demo mounted: 40 photos predicted,
30 words through `POST /feedback` (20 corrections, 10 confirmations), 5 through the demo driven by gradio_client, live
accuracy from them at `GET /quality` and in the gauges, every bad word refused with its 4xx and nothing stored for it;
then `dog-breed feedback` on the same store, and `dog-breed harvest` of the labelled photos from the server's archive.

Real Stanford dev photos when this machine has them, else the library's drawings (the feedback path is the same)."""
from __future__ import annotations

import csv
import hashlib
import sqlite3
from collections import Counter

import httpx
import pytest

from conftest import DEV_PHOTOS, Server, jpeg_bytes, photo, run_cli
from dog_breed_classifier.core import DogBreedError
from dog_breed_classifier.measure import photo_files

pytestmark = pytest.mark.slow   # a real server: not the fast tier

KEY = "feedback-" + "k" * 24
AUTH = {"Authorization": f"Bearer {KEY}"}
BREEDS = ["pug", "beagle", "basset", "chow", "samoyed", "collie", "whippet", "borzoi"]


def photos(n: int) -> list[tuple[str, bytes]]:
    "`n` (file name, bytes): real dev photos of `BREEDS` when present, else drawings."
    try: real = photo_files(DEV_PHOTOS, breeds=BREEDS)
    except DogBreedError: real = []
    if len(real) >= n: return [(p.name, p.read_bytes()) for p in real[:n]]
    return [(f"{BREEDS[i % 8]}_{i}.jpg", jpeg_bytes(photo(BREEDS[i % 8], i, (300, 260)))) for i in range(n)]


@pytest.fixture(scope="module")
def served(tmp_path_factory, zero_shot_dir):
    d = tmp_path_factory.mktemp("feedback")
    s = Server("--model-dir", zero_shot_dir, "--store-url", f"sqlite:///{d}/p.db", "--archive", d/"uploads",
               "--ui-with-key", "--drift-refresh", "0", cwd=d, env={"DOG_BREED_API_KEY": KEY})
    s.db = d/"p.db"
    answers = []
    with httpx.Client(base_url=s.url, headers=AUTH, timeout=60) as c:
        for name, content in photos(40):
            r = c.post("/predict", files={"file": (name, content, "image/jpeg")})
            assert r.status_code == 200, r.text
            answers.append(r.json())
    s.answers = answers
    yield s
    s.stop()


def feedback_rows(db) -> list[tuple]:
    with sqlite3.connect(db) as c:
        return c.execute("select prediction_id, breed, predicted, verdict, source from feedback").fetchall()


def wrong_breed(answer: dict) -> str:
    return next(b for b in BREEDS if b != answer["breed"])


def test_feedback_through_the_api_and_the_demo(served):
    with httpx.Client(base_url=served.url, headers=AUTH, timeout=60) as c:
        for a in served.answers[:20]:   # corrections
            r = c.post("/feedback", json={"prediction_id": a["prediction_id"], "breed": wrong_breed(a)})
            assert (r.status_code, r.json()["verdict"]) == (201, "corrected"), r.text
        for a in served.answers[20:30]:   # confirmations, in the words people use
            r = c.post("/feedback", json={"prediction_id": a["prediction_id"], "breed": a["display_name"] if a["is_dog"] else "no dog"})
            assert (r.status_code, r.json()["verdict"]) == (201, "confirmed"), r.text
        metrics = c.get("/metrics").text
    assert 'dogbreed_feedback_total{verdict="corrected"} 20.0' in metrics
    assert 'dogbreed_feedback_total{verdict="confirmed"} 10.0' in metrics

    from gradio_client import Client, handle_file
    ui = Client(served.url + "/ui/", verbose=False)
    said = []
    for i, (name, content) in enumerate(photos(35)[30:]):
        path = served.db.parent/name
        path.write_bytes(content)
        ui.predict(handle_file(str(path)), False, api_name="/identify")
        said.append(ui.predict(api_name="/confirm") if i % 2 else ui.predict("no_dog", api_name="/correct"))
    assert all(s.startswith("Thank you") for s in said), said

    rows = feedback_rows(served.db)
    assert len(rows) == 35
    assert sorted(r[4] for r in rows) == ["api"] * 30 + ["ui"] * 5
    assert sum(r[3] == "corrected" for r in rows if r[4] == "api") == 20
    ids = {a["prediction_id"] for a in served.answers}
    assert {r[0] for r in rows if r[4] == "api"} <= ids                         # linked to the answers given

    q = httpx.get(served.url + "/quality", headers=AUTH).json()   # live accuracy from those 35 words
    row = q["models"][0]
    confirmed = sum(r[3] == "confirmed" for r in rows)
    assert (len(q["models"]), row["model_version"], row["feedback"], row["confirmed"]) == (1, q["served_model_version"], 35, confirmed)
    assert row["interval"][0] <= row["accuracy"] == confirmed / 35 <= row["interval"][1]
    assert row["card_top1"] == q["card_top1"] is not None
    assert row["most_corrected"][0]["count"] == max(Counter((r[2], r[1]) for r in rows if r[3] == "corrected").values())
    assert "dogbreed_live_feedback_words 35.0" in httpx.get(served.url + "/metrics", headers=AUTH).text


def test_bad_feedback_gets_its_4xx_and_stores_nothing(served):
    before = feedback_rows(served.db)
    pid = served.answers[-1]["prediction_id"]
    cases = [(dict(json={"prediction_id": "0" * 32, "breed": "pug"}, headers=AUTH), 404, "unknown_prediction"),
             (dict(json={"prediction_id": pid, "breed": "tabby cat"}, headers=AUTH), 422, "unknown_breed"),
             (dict(json={"prediction_id": pid, "breed": "pug"}), 401, "unauthorized"),
             (dict(json={"prediction_id": pid, "breed": "pug", "note": "x" * 10_000}, headers=AUTH), 422, "note_too_long"),
             (dict(content=b'{"prediction_id": ', headers={**AUTH, "content-type": "application/json"}), 422, "bad_request"),
             (dict(json={"breed": "pug"}, headers=AUTH), 422, "bad_request")]
    for kw, status, reason in cases:
        r = httpx.post(served.url + "/feedback", timeout=60, **kw)
        assert (r.status_code, r.json()["reason"]) == (status, reason), (kw.get("json"), r.text)
    r = httpx.post(served.url + "/feedback", json={"prediction_id": pid, "breed": "german shepard"}, headers=AUTH)
    assert "closest: german_shepherd" in r.json()["detail"]
    assert feedback_rows(served.db) == before


def test_a_second_word_replaces_the_first_and_the_cli_writes_the_same_store(served, tmp_path):
    a = served.answers[-2]
    first = httpx.post(served.url + "/feedback", json={"prediction_id": a["prediction_id"], "breed": "collie"}, headers=AUTH).json()
    res = run_cli("feedback", a["prediction_id"], "Shetland sheepdog", "--note", "the small one",
                  "--store-url", f"sqlite:///{served.db}", cwd=tmp_path)
    assert res.returncode == 0 and "replaces the earlier word" in res.stdout, res.stderr
    assert first["replaced"] is False
    with sqlite3.connect(served.db) as c:
        assert c.execute("select breed, source, note from feedback where prediction_id = ?",
                         (a["prediction_id"],)).fetchall() == [("shetland_sheepdog", "cli", "the small one")]
    res = run_cli("feedback", "f" * 32, "pug", "--store-url", f"sqlite:///{served.db}", cwd=tmp_path)
    assert res.returncode == 2 and "no prediction" in res.stderr and "Traceback" not in res.stderr


def test_harvest_writes_each_labelled_archived_photo_once_byte_for_byte(served, tmp_path):
    for a in served.answers[:10]:   # words of its own, so that it also runs alone (-k harvest): the same as the first test's
        r = httpx.post(served.url + "/feedback", json={"prediction_id": a["prediction_id"], "breed": wrong_breed(a)}, headers=AUTH)
        assert r.status_code == 201, r.text
    with sqlite3.connect(served.db) as c:
        words = c.execute("select f.prediction_id, f.breed, p.archived_as, p.content_sha256 from feedback f "
                          "join predictions p on p.id = f.prediction_id").fetchall()
    assert len(words) >= 10
    out, args = tmp_path/"feedback", ["--store-url", f"sqlite:///{served.db}", "--archive", served.db.parent/"uploads"]
    res = run_cli("harvest", "--out", out, *args, "--trusted", "default", "--trusted", "ui", "--trusted", "cli", cwd=tmp_path)   # everyone here: the one key (`default`), the demo's visitors, the CLI
    assert res.returncode == 0, res.stderr
    labelled = [w for w in words if w[1] != "no_dog"]
    unique = {w[3] for w in labelled}
    assert f"{len(unique)} new photos" in res.stdout and f"{len(words) - len(labelled)} no dog" in res.stdout, res.stdout
    written = {p.relative_to(out).as_posix(): p.read_bytes() for p in out.rglob("*.jpg")}
    assert len(written) == len(unique)
    for pid, breed, archived_as, sha in labelled:
        f = f"{breed}/{pid}.jpg"
        if f in written:
            assert written[f] == (served.db.parent/"uploads"/archived_as).read_bytes()   # byte-identical, under the user's breed
            assert hashlib.sha256(written[f]).hexdigest() == sha
    with open(out/"manifest.csv") as f: manifest = list(csv.DictReader(f))
    assert sorted(r["file"] for r in manifest) == sorted(written)
    again = run_cli("harvest", "--out", out, *args, "--trusted", "default", "--trusted", "ui", "--trusted", "cli", cwd=tmp_path)
    assert again.returncode == 0 and "0 new photos" in again.stdout and f"{len(unique)} already there" in again.stdout, again.stdout
    missing = run_cli("harvest", "--out", out, "--store-url", f"sqlite:///{served.db}", "--archive", tmp_path/"nowhere", cwd=tmp_path)
    assert missing.returncode == 2 and "--archive" in missing.stderr and "Traceback" not in missing.stderr
