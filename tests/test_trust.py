"""A loop strangers cannot poison, for real: `dog-breed serve --api-keys-file` with three named keys (partner,
intruder, curator) and `--feedback-limit 20/hour`. The intruder labels 30 photos wrongly and is cut off after 20
(429 with Retry-After); the partner labels 20 truthfully, the curator 10. Every row says who gave it. `harvest
--trusted curator` writes exactly the curator's 10; `review --json` lists the partner's and the intruder's words;
after the partner's are accepted and the intruder's rejected, a second harvest adds the partner's 20 and none of the
intruder's. A key added to the file and one revoked take effect on SIGHUP, without a restart."""
from __future__ import annotations

import json
import signal
import sqlite3
import time

import httpx
import pytest

from conftest import DEV_PHOTOS, Server, jpeg_bytes, photo, run_cli

pytestmark = pytest.mark.slow   # a real server: not the fast tier

KEYS = {"partner": "p-" + "1" * 30, "intruder": "i-" + "2" * 30, "curator": "c-" + "3" * 30}
BREEDS = ["pug", "beagle", "basset", "chow", "samoyed", "collie", "whippet", "borzoi", "papillon", "vizsla"]


def labelled_photos(n: int) -> list[tuple[str, bytes]]:
    "`n` (true breed, JPEG bytes): real dev photos when this machine has them, else the library's drawings."
    real = sorted(p for b in BREEDS for p in (DEV_PHOTOS/"Images").glob(f"*-{b}/*.jpg")) if DEV_PHOTOS.is_dir() else []
    if len(real) >= n: return [(p.parent.name.split("-", 1)[1].lower(), p.read_bytes()) for p in real[:n]]
    return [(BREEDS[i % len(BREEDS)], jpeg_bytes(photo(BREEDS[i % len(BREEDS)], 100 + i, (240, 200)))) for i in range(n)]


def auth(name: str) -> dict: return {"Authorization": f"Bearer {KEYS[name]}"}


@pytest.fixture(scope="module")
def served(tmp_path_factory, zero_shot_dir):
    d = tmp_path_factory.mktemp("trust")
    keys = d/"keys.txt"
    keys.write_text("# one key per client\n" + "".join(f"{n}:{k}\n" for n, k in KEYS.items()))
    s = Server("--model-dir", zero_shot_dir, "--store-url", f"sqlite:///{d}/p.db", "--archive", d/"uploads", "--no-ui",
               "--api-keys-file", keys, "--feedback-limit", "20/hour", "--drift-refresh", "0", cwd=d)
    s.dir, s.keys, s.db = d, keys, d/"p.db"
    pictures = labelled_photos(60)
    s.answers = {}
    with httpx.Client(base_url=s.url, timeout=60) as c:
        for client, chunk in (("intruder", pictures[:30]), ("partner", pictures[30:50]), ("curator", pictures[50:])):
            s.answers[client] = []
            for breed, content in chunk:
                r = c.post("/predict", files={"file": ("dog.jpg", content, "image/jpeg")}, headers=auth(client))
                assert r.status_code == 200, r.text
                s.answers[client].append((breed, r.json()["prediction_id"]))
    yield s
    s.stop()


def words_by_client(db) -> dict:
    with sqlite3.connect(db) as c:
        return dict(c.execute("select client, count(*) from feedback group by client").fetchall())


def test_named_keys_feedback_limit_provenance_review_and_harvest(served):
    statuses = {}
    with httpx.Client(base_url=served.url, timeout=60) as c:
        for breed, pid in served.answers["intruder"]:   # every word wrong: a pug called a beagle, …
            r = c.post("/feedback", json={"prediction_id": pid, "breed": BREEDS[(BREEDS.index(breed) + 1) % len(BREEDS)]},
                       headers=auth("intruder"))
            statuses.setdefault(r.status_code, []).append(r)
        for client in ("partner", "curator"):
            for breed, pid in served.answers[client]:
                r = c.post("/feedback", json={"prediction_id": pid, "breed": breed}, headers=auth(client))
                assert r.status_code == 201, r.text
    assert len(statuses[201]) == 20 and len(statuses[429]) == 10, {k: len(v) for k, v in statuses.items()}
    limited = statuses[429][0]
    assert limited.json()["reason"] == "feedback_limited" and int(limited.headers["retry-after"]) > 0
    assert words_by_client(served.db) == {"intruder": 20, "partner": 20, "curator": 10}
    with sqlite3.connect(served.db) as c:
        assert dict(c.execute("select client, count(*) from predictions group by client").fetchall()) == \
            {"intruder": 30, "partner": 20, "curator": 10}
    for key in KEYS.values(): assert key not in (served.dir/f"server-{served.port}.log").read_text()

    store, archive = ["--store-url", f"sqlite:///{served.db}"], ["--archive", served.dir/"uploads"]
    out = served.dir/"feedback"
    first = run_cli("harvest", "--out", out, *store, *archive, "--trusted", "curator", cwd=served.dir)
    assert first.returncode == 0 and "10 new photos" in first.stdout and "40 waiting for review" in first.stdout, first.stdout + first.stderr
    assert {p.stem for p in out.rglob("*.jpg")} == {pid for _, pid in served.answers["curator"]}

    listed = json.loads(run_cli("review", "--json", *store, "--trusted", "curator", cwd=served.dir).stdout)
    assert len(listed) == 40 and set(listed[0]) == {"prediction_id", "client", "given_at", "predicted", "breed", "archived_as"}
    assert {w["client"] for w in listed} == {"partner", "intruder"}
    partner_ids = [w["prediction_id"] for w in listed if w["client"] == "partner"]
    decided = run_cli("review", *store, "--trusted", "curator", "--accept", *partner_ids, "--reject-client", "intruder", cwd=served.dir)
    assert decided.returncode == 0 and "accepted 20" in decided.stdout and "rejected 20" in decided.stdout, decided.stdout + decided.stderr
    assert "nothing waits for review" in decided.stdout
    with sqlite3.connect(served.db) as c:
        assert c.execute("select count(*) from feedback where review is not null and reviewed_by like '%@%'").fetchone() == (40,)

    second = run_cli("harvest", "--out", out, *store, *archive, "--trusted", "curator", cwd=served.dir)
    assert second.returncode == 0 and "20 new photos" in second.stdout and "20 rejected in review" in second.stdout, second.stdout
    harvested = {p.stem for p in out.rglob("*.jpg")}
    assert harvested == {pid for c in ("curator", "partner") for _, pid in served.answers[c]}
    assert not harvested & {pid for _, pid in served.answers["intruder"]}   # none of the intruder's, ever
    bad = run_cli("review", *store, "--accept", "f" * 32, cwd=served.dir)
    assert bad.returncode == 2 and "nothing was decided" in bad.stderr and "Traceback" not in bad.stderr


def test_keys_are_added_and_revoked_on_sighup(served):
    assert httpx.get(served.url + "/model", headers=auth("intruder")).status_code == 200
    late = "l-" + "4" * 30
    served.keys.write_text(f"partner:{KEYS['partner']}\ncurator:{KEYS['curator']}\nlate:{late}\n")   # intruder revoked
    served.proc.send_signal(signal.SIGHUP)
    deadline = time.time() + 10
    while time.time() < deadline and httpx.get(served.url + "/model", headers={"Authorization": f"Bearer {late}"}).status_code != 200:
        time.sleep(0.2)
    assert httpx.get(served.url + "/model", headers={"Authorization": f"Bearer {late}"}).status_code == 200
    assert httpx.get(served.url + "/model", headers=auth("intruder")).status_code == 401
    assert httpx.get(served.url + "/model", headers=auth("partner")).status_code == 200
    served.keys.write_text("not a key line\n")   # a broken file: the keys stay as they were, the server says why in its log
    served.proc.send_signal(signal.SIGHUP); time.sleep(1)
    assert httpx.get(served.url + "/model", headers={"Authorization": f"Bearer {late}"}).status_code == 200
    assert "API keys not reloaded" in (served.dir/f"server-{served.port}.log").read_text()


def test_one_key_and_named_keys_together_are_refused(tmp_path):
    (tmp_path/"keys").write_text("a:k-123\n")
    res = run_cli("serve", "--api-keys-file", tmp_path/"keys", "--no-ui", cwd=tmp_path, env={"DOG_BREED_API_KEY": "s1ngle-k3y"}, timeout=60)
    assert res.returncode == 2 and "use one" in res.stderr and "s1ngle-k3y" not in res.stderr
    (tmp_path/"keys").write_text("cli:k-123\n")
    res = run_cli("serve", "--api-keys-file", tmp_path/"keys", "--no-ui", cwd=tmp_path, timeout=60)
    assert res.returncode == 2 and "line 1" in res.stderr and "k-123" not in res.stderr
    res = run_cli("serve", "--feedback-limit", "lots", "--no-ui", cwd=tmp_path, timeout=60)
    assert res.returncode == 2 and "--feedback-limit 'lots' is not a rate" in res.stderr


def test_a_curator_reviews_in_the_demo_and_visitors_words_are_limited(tmp_path, zero_shot_dir):
    "The demo beside named keys (--ui-with-key): a visitor's words are recorded as ui:<hash>, limited, and wait; a curator's key reviews them."
    from gradio_client import Client, handle_file
    (tmp_path/"params.yaml").write_text("loop:\n  trusted_clients: [cli, curator]\n")   # the curator's words need no review
    (tmp_path/"keys").write_text(f"curator:{KEYS['curator']}\npartner:{KEYS['partner']}\n")
    s = Server("--model-dir", zero_shot_dir, "--store-url", f"sqlite:///{tmp_path}/p.db", "--archive", tmp_path/"uploads",
               "--api-keys-file", tmp_path/"keys", "--ui-with-key", "--feedback-limit", "2/hour", "--drift-refresh", "0", cwd=tmp_path)
    try:
        ui = Client(s.url + "/ui/", verbose=False)
        said = []
        for i, (_, content) in enumerate(labelled_photos(3)):
            (tmp_path/f"{i}.jpg").write_bytes(content)
            ui.predict(handle_file(str(tmp_path/f"{i}.jpg")), False, api_name="/identify")
            said.append(ui.predict("chow", api_name="/correct"))
        assert said[0].startswith("Thank you") and said[2].startswith("Not recorded: over the limit"), said
        with sqlite3.connect(tmp_path/"p.db") as c:
            clients = {row[0] for row in c.execute("select client from feedback")}
        assert len(clients) == 1 and clients.pop().startswith("ui:")
        assert ui.predict(KEYS["partner"], api_name="/review_next")[1].startswith("Not a reviewer's key")   # a key, not trusted
        photo_shown, text = ui.predict(KEYS["curator"], api_name="/review_next")
        assert "says **chow**" in text and photo_shown, text
        ui.predict(KEYS["curator"], api_name="/review_reject")
        _, text = ui.predict(KEYS["curator"], api_name="/review_accept")
        assert "Nothing waits for review" in text, text
        with sqlite3.connect(tmp_path/"p.db") as c:
            decided = sorted(c.execute("select review, reviewed_by from feedback").fetchall())
        assert decided == [("accepted", "curator (the demo)"), ("rejected", "curator (the demo)")], decided
    finally:
        s.stop()
