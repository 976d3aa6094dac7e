"""The Gradio demo for real: mounted at /ui on a `dog-breed serve` process and driven by headless Chromium
(Debian's chromium, driven by Playwright), and the assembled Hugging Face Space started as `python app.py` in a
Python where torch cannot be imported.

The browser test skips when there is no Chromium or no Playwright; `.ci/run` installs both."""
from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from conftest import DEV_PHOTOS, REPO, Server, free_port, photo, run_cli

pytestmark = pytest.mark.slow   # real servers and a real browser: not the fast tier

CHROMIUM = (os.environ.get("DOG_BREED_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
            or shutil.which("google-chrome"))
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]   # the closed network refuses Chromium's own calls
SCREENSHOTS = REPO/"reports"/"ui"


def ui_rows(db: Path) -> list[tuple]:
    with sqlite3.connect(db) as c: return c.execute("select source, breed, is_dog from predictions where source = 'ui'").fetchall()


@pytest.fixture(scope="module")
def server(tmp_path_factory, zero_shot_dir):
    d = tmp_path_factory.mktemp("ui")
    s = Server("--model-dir", zero_shot_dir, "--store-url", f"sqlite:///{d}/predictions.db", "--drift-refresh", "0", cwd=d)
    s.db, s.dir = d/"predictions.db", d
    yield s
    s.stop()


def test_demo_is_mounted_beside_the_rest_routes(server):
    r = httpx.get(server.url + "/", follow_redirects=False)
    assert (r.status_code, r.headers["location"]) == (307, "/ui/")
    page = httpx.get(server.url + "/ui/")
    assert page.status_code == 200 and "Which dog breed is this?" in page.text
    config = httpx.get(server.url + "/ui/config").json()   # the page's assets and queue live under the mount path
    assets = re.findall(r'(?:src|href)="\./(assets/[^"]+)"', page.text)
    assert assets and all(httpx.get(f"{server.url}/ui/{a}").status_code == 200 for a in assets), assets
    assert config["root"].rstrip("/").endswith("/ui"), config["root"]
    assert httpx.get(server.url + "/health").json()["status"] == "ok"
    paths = httpx.get(server.url + "/openapi.json").json()["paths"]
    assert {"/predict", "/predict/batch", "/health", "/model", "/drift", "/metrics"} <= set(paths)
    assert not [p for p in paths if p.startswith("/ui")]


def test_serve_without_the_demo(tmp_path, zero_shot_dir):
    s = Server("--model-dir", zero_shot_dir, "--store-url", f"sqlite:///{tmp_path}/p.db", "--no-ui", "--drift-refresh", "0", cwd=tmp_path)
    try:
        assert httpx.get(s.url + "/ui/").status_code == 404
        assert httpx.get(s.url + "/", follow_redirects=False).headers["location"] == "/docs"
    finally: s.stop()


@pytest.fixture(scope="module")
def browser():
    playwright = pytest.importorskip("playwright.sync_api", reason="pip install playwright (the dev extra has it)")
    if not CHROMIUM: pytest.skip("no Chromium: apt-get install chromium (.ci/run does)")
    with playwright.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


def prediction_id(headline: str) -> str | None:
    "The id of the logged prediction a headline shows (None before the first answer)."
    m = re.search(r"logged as ([0-9a-f]{32})", headline)
    return m.group(1) if m else None


def wait_for_new_prediction(page, before: str | None, timeout_ms: int = 60_000) -> str:
    "Wait until the headline shows a logged prediction other than `before`; its id."
    page.wait_for_function("b => { const m = (document.querySelector('#headline') || {innerText: ''}).innerText.match(/logged as ([0-9a-f]{32})/); "
                           "return m !== null && m[1] !== b; }", arg=before, timeout=timeout_ms)
    return prediction_id(page.inner_text("#headline"))


def upload_and_wait(page, path: Path) -> str:
    "Upload `path` into the demo's photo input and wait for its logged prediction; its id."
    before = prediction_id(page.inner_text("#headline"))
    page.set_input_files("#photo input[type=file]", str(path))
    return wait_for_new_prediction(page, before)


def test_browser_upload_shows_top5_heatmap_and_logs(server, browser, tmp_path):
    drawing = tmp_path/"drawn_pug.jpg"
    photo("pug", seed=3, size=(360, 300)).save(drawing, quality=92)
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(server.url + "/")   # redirected to the demo
    assert page.url.endswith("/ui/")
    page.wait_for_selector("#photo input[type=file]", state="attached", timeout=60_000)

    pid = upload_and_wait(page, drawing)
    rows = page.locator("#top5 [data-testid$='-confidence-set']")
    assert rows.count() == 5
    names = [rows.nth(i).get_attribute("data-testid").removesuffix("-confidence-set") for i in range(5)]
    assert all(names) and len(set(names)) == 5
    headline = page.inner_text("#headline")
    assert "No dog found" in headline, headline   # a model of photos finds no dog in a drawing, and says so
    assert "Closest breeds" in page.inner_text("#top5")
    assert ui_rows(server.db) == [("ui", None, 0)]   # logged once, as a UI prediction, under the id the page shows
    with sqlite3.connect(server.db) as c: assert c.execute("select id from predictions where source = 'ui'").fetchall() == [(pid,)]

    page.check("#show-why input[type=checkbox]")   # explains the photo already shown: no new prediction
    page.wait_for_selector("#heatmap img", timeout=60_000)
    page.wait_for_function("() => document.querySelector('#heatmap-cost').innerText.includes(' ms')", timeout=60_000)
    cost = page.inner_text("#heatmap-cost")
    assert cost.startswith("Heatmap: grad-cam on torch") or cost.startswith("Heatmap: occlusion on"), cost
    assert len(ui_rows(server.db)) == 1

    dev = sorted((DEV_PHOTOS/"Images").glob("*-pug/*.jpg"))[:1]
    if dev:   # a real photo when this machine has them: a breed is named, the heatmap follows it
        upload_and_wait(page, dev[0])
        page.wait_for_function("() => document.querySelector('#heatmap-cost').innerText.includes(' ms')", timeout=60_000)
        assert "Pug" in page.inner_text("#headline")
        assert ui_rows(server.db)[-1][:2] == ("ui", "pug")
    before = prediction_id(page.inner_text("#headline"))   # an example: drawn by the library, predicted and logged the same way
    page.locator("#examples img").first.click()
    wait_for_new_prediction(page, before)
    assert ui_rows(server.db)[-1][0] == "ui"
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS/"demo.png"), full_page=True)
    assert not errors, errors
    page.close()


def test_browser_shows_a_clear_error_for_a_broken_photo(server, browser, tmp_path):
    broken = tmp_path/"broken.jpg"
    broken.write_bytes((REPO/"README.md").read_bytes()[:2000])   # text wearing a .jpg name
    page = browser.new_page()
    page.goto(server.url + "/ui/")
    page.wait_for_selector("#photo input[type=file]", state="attached", timeout=60_000)
    before = len(ui_rows(server.db))
    page.set_input_files("#photo input[type=file]", str(broken))
    toast = page.wait_for_selector(".toast-body", timeout=30_000).inner_text()
    assert "not a photo" in toast and "Traceback" not in toast and "preprocess" not in toast, toast   # the API's sentence
    assert len(ui_rows(server.db)) == before
    page.close()


def test_space_runs_without_torch(tmp_path, zero_shot_dir):
    space = tmp_path/"space"
    r = run_cli("space", space, "--model-dir", zero_shot_dir, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    requirements = (space/"requirements.txt").read_text().lower()
    assert "torch" not in requirements and "evidently" not in requirements and "--hash" not in requirements
    locked = (REPO/"requirements"/"serve-openvino.lock").read_text().lower()
    for pin in requirements.split():   # the serving image's versions (its hashed lock), the Space's own pip adding hashes
        if "==" in pin: assert pin in locked, pin
    assert "gradio==" in requirements and "openvino==" in requirements
    lfs = (space/".gitattributes").read_text()
    shipped = {p.suffix for p in space.rglob("*") if p.is_file() and p.suffix in (".onnx", ".npy", ".bin", ".safetensors")}
    assert all(f"*{s} filter=lfs" in lfs for s in shipped | {".bin"}), lfs
    assert (space/"README.md").read_text().startswith("---\ntitle: Dog breed classifier\n")
    assert (space/"app.py").read_text() == (REPO/"app.py").read_text()
    assert not (space/"model"/"model.safetensors").exists()
    no_torch = tmp_path/"no_torch"/"torch"   # as on a Space without torch: importing it fails
    no_torch.mkdir(parents=True)
    (no_torch/"__init__.py").write_text("raise ImportError('torch is not installed in this Space')\n")
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(no_torch.parent), "GRADIO_SERVER_NAME": "127.0.0.1", "GRADIO_SERVER_PORT": str(port),
           "DOG_BREED_STORE_URL": f"sqlite:///{space}/predictions.db", "DO_NOT_TRACK": "1", "HF_HUB_OFFLINE": "1"}
    env.pop("DOG_BREED_MODEL_DIR", None)
    log = tmp_path/"space.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "app.py"], cwd=space, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}/"
        deadline = time.time() + 120
        while True:
            assert proc.poll() is None, log.read_text()[-3000:]
            try:
                if httpx.get(url, timeout=2).status_code == 200: break
            except httpx.TransportError: pass
            assert time.time() < deadline, log.read_text()[-3000:]
            time.sleep(0.5)
        from gradio_client import Client, handle_file
        drawing = tmp_path/"drawn_beagle.jpg"
        photo("beagle", seed=1, size=(320, 288)).save(drawing)
        headline, label, heatmap, cost, _thanks, about = Client(url, verbose=False).predict(handle_file(str(drawing)), True, api_name="/identify")
        version = json.loads((zero_shot_dir/"model_card.json").read_text())["model_version"]
        assert f"model {version}" in headline and "logged as" in headline   # the model shipped in the Space
        assert f"`{version}`" in about   # the card of the model that answered
        assert label["label"] == "Closest breeds (no dog found)" and len(label["value"]["confidences"]) == 5
        assert cost.startswith("Heatmap: occlusion on"), cost   # no torch: the heatmap comes from the ONNX model
        with sqlite3.connect(space/"predictions.db") as c:
            [(source, client)] = c.execute("select source, client from predictions").fetchall()
            assert source == "ui" and client.startswith("ui:") and "127.0.0.1" not in client   # the visitor, hashed
    finally:
        proc.terminate()
        try: proc.wait(20)
        except subprocess.TimeoutExpired: proc.kill(); proc.wait()
