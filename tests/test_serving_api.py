"""Serving for real: `dog-breed serve` started as a uvicorn process on 127.0.0.1, driven over HTTP.

Happy path, every error code, /metrics moving (and carrying the process, checked by promtool), one store row per
acknowledged prediction, /health 503 with a corrupt model, model selection out of the box, `dog-breed predict`, and
Predictor/evaluation parity."""
from __future__ import annotations

import concurrent.futures as cf
import io
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import threading
from importlib.metadata import version
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from conftest import DEV_PHOTOS, REPO, Server, jpeg_bytes, photo, run_cli
from dog_breed_classifier.core import DEFAULT_ARCH

pytestmark = pytest.mark.slow   # real servers and the CLI: not the fast tier

DEV = DEV_PHOTOS/"Images"


@pytest.fixture(scope="module")
def server(tmp_path_factory, zero_shot_dir):
    d = tmp_path_factory.mktemp("serve")
    s = Server("--model-dir", zero_shot_dir, "--store-url", f"sqlite:///{d}/predictions.db", "--archive", d/"uploads",
               "--max-upload-mb", "1", cwd=d)
    s.db, s.dir = d/"predictions.db", d
    yield s
    s.stop()


def rows(db: Path) -> int:
    with sqlite3.connect(db) as c: return c.execute("select count(*) from predictions").fetchone()[0]


def png_bytes(img: Image.Image) -> bytes:
    buf = io.BytesIO(); img.save(buf, "PNG"); return buf.getvalue()


def dog_photo() -> tuple[bytes, str | None]:
    "A real dog photo and its breed when this machine has the Stanford photos, else a generated one."
    if DEV.is_dir():
        f = sorted(DEV.glob("*-golden_retriever/*.jpg"))[0]
        return f.read_bytes(), "golden_retriever"
    return jpeg_bytes(photo("golden_retriever", 3, (320, 256))), None


def test_predict_answers_logs_and_archives(server):
    content, breed = dog_photo()
    before = rows(server.db)
    r = httpx.post(server.url + "/predict", files={"file": ("../../etc/passwd", content, "image/jpeg")}, timeout=30)
    assert r.status_code == 200, r.text
    a = r.json()
    assert {"prediction_id", "breed", "confidence", "top_k", "is_dog", "image_stats", "model_version", "latency_ms"} <= set(a)
    assert len(a["top_k"]) == 5 and a["top_k"] == sorted(a["top_k"], key=lambda t: -t["probability"])
    from dog_breed_classifier.images import IMAGE_STAT_NAMES
    assert list(a["image_stats"]) == list(IMAGE_STAT_NAMES) and len(IMAGE_STAT_NAMES) == 14
    assert (a["image_stats"]["width"], a["image_stats"]["height"]) == (a["width"], a["height"])   # the photo as sent
    if breed: assert a["is_dog"] and a["breed"] == breed and a["confidence"] > 0.5
    assert rows(server.db) == before + 1
    with sqlite3.connect(server.db) as c:
        stored = c.execute("select breed, model_version, archived_as, bytes, length(embedding) from predictions where id = ?",
                           (a["prediction_id"],)).fetchone()
    assert stored[:2] == (a["breed"], a["model_version"]) and stored[3] == len(content) and stored[4] == 1280 * 2
    archived = server.dir/"uploads"/stored[2]
    assert archived.read_bytes() == content and re.fullmatch(r"\d{4}/\d\d/\d\d/[0-9a-f]{32}\.jpg", stored[2])   # a generated name
    assert not (server.dir/"etc").exists()


def test_not_a_dog_is_said_so(server):
    r = httpx.post(server.url + "/predict", files={"file": ("sky.png", png_bytes(Image.new("RGB", (320, 240), (90, 140, 220))), "image/png")})
    assert r.status_code == 200 and r.json()["is_dog"] is False and r.json()["breed"] is None


def test_every_client_mistake_is_a_4xx_and_nothing_is_logged(server):
    good = jpeg_bytes(photo("pug", 1, (200, 200)))
    bomb = io.BytesIO(); Image.new("1", (9000, 9000)).save(bomb, "PNG")   # 81 Mpx in a few kB: over the 40 Mpx cap
    cases = [
        ("missing file field", dict(data={"other": "x"}), 422, "bad_request"),
        ("plain text", dict(files={"file": ("a.jpg", b"just some text", "image/jpeg")}), 415, "not_an_image"),
        ("html", dict(files={"file": ("a.jpg", b"<!DOCTYPE html><html></html>", "image/jpeg")}), 415, "not_an_image"),
        ("empty", dict(files={"file": ("a.jpg", b"", "image/jpeg")}), 422, "empty_file"),
        ("truncated JPEG", dict(files={"file": ("a.jpg", good[:400], "image/jpeg")}), 422, "truncated"),
        ("TIFF", dict(files={"file": ("a.tif", _tiff(), "image/tiff")}), 415, "unsupported_format"),
        ("too small", dict(files={"file": ("a.png", png_bytes(Image.new("RGB", (10, 10))), "image/png")}), 422, "too_small"),
        ("decompression bomb", dict(files={"file": ("a.png", bomb.getvalue(), "image/png")}), 422, "too_large"),
        ("over 1 MB", dict(files={"file": ("a.jpg", good + os.urandom(1_100_000), "image/jpeg")}), 413, "too_large_upload"),
    ]
    before = rows(server.db)
    for name, kw, status, reason in cases:
        r = httpx.post(server.url + "/predict", timeout=30, **kw)
        assert (r.status_code, r.json()["reason"]) == (status, reason), (name, r.status_code, r.text)
        assert r.json()["detail"] and "Traceback" not in r.text
    assert rows(server.db) == before
    assert httpx.get(server.url + "/health").status_code == 200   # still up


def _tiff() -> bytes:
    buf = io.BytesIO(); Image.new("RGB", (64, 64), (1, 2, 3)).save(buf, "TIFF"); return buf.getvalue()


def test_batch_answers_each_file_in_order(server):
    files = [("files", ("a.jpg", jpeg_bytes(photo("pug", 2, (200, 180))), "image/jpeg")),
             ("files", ("b.jpg", b"junk", "image/jpeg")),
             ("files", ("c.png", png_bytes(photo("beagle", 2, (200, 180))), "image/png"))]
    before = rows(server.db)
    r = httpx.post(server.url + "/predict/batch", files=files, timeout=30)
    assert r.status_code == 200
    answers = r.json()["predictions"]
    assert ["error" in a for a in answers] == [False, True, False] and answers[1]["error"]["status"] == 415
    assert rows(server.db) == before + 2


def test_concurrent_requests_each_get_a_row_and_metrics_move(server):
    def counter(text, name, **labels):
        want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
        m = re.search(rf"^{name}\{{{re.escape(want)}\}} ([0-9.e+]+)$", text, re.M)
        return float(m.group(1)) if m else 0.0
    metrics_before = httpx.get(server.url + "/metrics").text
    before = rows(server.db)
    photos = [jpeg_bytes(photo(b, i, (240, 200))) for i, b in enumerate(["pug", "beagle", "chow", "papillon"] * 10)]
    with httpx.Client(timeout=60) as client, cf.ThreadPoolExecutor(8) as pool:
        codes = list(pool.map(lambda c: client.post(server.url + "/predict", files={"file": ("p.jpg", c, "image/jpeg")}).status_code, photos))
    assert codes == [200] * len(photos)
    assert rows(server.db) == before + len(photos)
    text = httpx.get(server.url + "/metrics").text
    key = dict(route="/predict", method="POST", status="200")
    assert counter(text, "dogbreed_requests_total", **key) - counter(metrics_before, "dogbreed_requests_total", **key) == len(photos)
    for name in ("dogbreed_request_latency_seconds_bucket", "dogbreed_upload_bytes_bucket", "dogbreed_predictions_total",
                 "dogbreed_model_info", "dogbreed_errors_total"):
        assert name in text


def test_metrics_carry_the_process_and_pass_promtool(server):
    httpx.post(server.url + "/predict", files={"file": ("p.jpg", jpeg_bytes(photo("pug", 1, (240, 200))), "image/jpeg")})
    text = httpx.get(server.url + "/metrics").text
    value = lambda name: float(re.search(rf"^{name}(?:{{[^}}]*}})? ([0-9.e+]+)$", text, re.M).group(1))
    assert 50e6 < value("process_resident_memory_bytes") < 8e9 and value("process_cpu_seconds_total") > 0
    assert value("process_open_fds") > 0 and value("dogbreed_process_threads") >= value("dogbreed_runtime_threads") >= 1
    assert value("python_gc_objects_collected_total") >= 0 and 'python_info{implementation="CPython"' in text
    promtool = shutil.which("promtool")
    if promtool is None: pytest.skip("promtool is not installed (apt-get install prometheus; .ci/run does)")
    res = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True)
    assert res.returncode == 0 and not res.stdout.strip() and not res.stderr.strip(), res.stdout + res.stderr


def test_model_card_and_health(server, zero_shot_dir):
    card = httpx.get(server.url + "/model").json()
    assert card["model_version"] == json.loads((zero_shot_dir/"model_card.json").read_text())["model_version"]
    assert card["runtime"]["backend"] in ("openvino", "onnxruntime") and card["caveat"]
    # the libraries that made the model, as the card recorded them at export
    assert card["environment"]["torch"] == version("torch") and card["environment"]["timm"] == version("timm")
    assert {"fastai", "onnx", "onnxruntime", "openvino", "nncf", "numpy"} <= set(card["environment"])
    h = httpx.get(server.url + "/health").json()
    assert h["status"] == "ok" and h["store_writable"] and h["model_version"] == card["model_version"]


def test_corrupt_model_dir_starts_and_health_is_503(tmp_path, zero_shot_dir):
    broken = tmp_path/"broken"; shutil.copytree(zero_shot_dir, broken)
    (broken/"model.onnx").write_bytes(b"\x08\x07 not a protobuf")
    s = Server("--model-dir", broken, "--store-url", f"sqlite:///{tmp_path}/p.db", cwd=tmp_path)
    try:
        r = httpx.get(s.url + "/health")
        assert r.status_code == 503 and "not a loadable ONNX model" in r.json()["model_error"]
        r = httpx.post(s.url + "/predict", files={"file": ("a.jpg", jpeg_bytes(photo()), "image/jpeg")})
        assert r.status_code == 503 and r.json()["reason"] == "model_not_loaded"
    finally: s.stop()
    assert "not a loadable ONNX model" in s.log.read_text()   # and said so at start-up


def test_out_of_the_box_a_sample_trained_project_serves_the_zero_shot_model(tmp_path, cache_dir, zero_shot_dir):
    serving = tmp_path/"models"/"serving"; shutil.copytree(zero_shot_dir, serving)
    card = json.loads((serving/"model_card.json").read_text())
    card["training"]["data"] = {"source": "sample"}; card["model_version"] = "trained-on-sample"
    (serving/"model_card.json").write_text(json.dumps(card))
    (tmp_path/"params.yaml").write_text("")
    s = Server("--store-url", f"sqlite:///{tmp_path}/p.db", cwd=tmp_path, env={"DOG_BREED_CACHE": str(cache_dir)})
    try:
        h = httpx.get(s.url + "/health").json()
        assert "synthetic sample" in h["model_selection"] and h["model_version"] != "trained-on-sample"
        assert "synthetic sample" in httpx.get(s.url + "/model").json()["selection_reason"]
    finally: s.stop()
    assert "synthetic sample" in s.log.read_text()


def test_cli_predict(tmp_path, zero_shot_dir):
    Image.new("RGB", (300, 200), (200, 200, 200)).save(tmp_path/"wall.png")
    (tmp_path/"dog.jpg").write_bytes(dog_photo()[0])
    res = run_cli("predict", "--json", "--model-dir", zero_shot_dir, "dog.jpg", "wall.png", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    answers = [json.loads(line) for line in res.stdout.splitlines()]
    assert [a["file"] for a in answers] == ["dog.jpg", "wall.png"] and answers[0]["is_dog"] and not answers[1]["is_dog"]
    table = run_cli("predict", "--model-dir", zero_shot_dir, "dog.jpg", "missing.jpg", cwd=tmp_path)
    assert table.returncode == 1 and "missing.jpg: file not found" in table.stderr and table.stdout.startswith("dog.jpg\t")


def test_predictor_agrees_with_evaluation(zero_shot_dir):
    "The serving path (ONNX, no torch) picks the breed the evaluate stage (torch) picks, photo by photo."
    from dog_breed_classifier.evaluate import predict_probs
    from dog_breed_classifier.inference import Predictor
    from dog_breed_classifier.model import create_model
    if DEV.is_dir(): files = [f for folder in sorted(DEV.iterdir())[::4] for f in sorted(folder.glob("*.jpg"))[:2]]
    else:
        files = []
        for i, b in enumerate(["pug", "beagle", "chow", "papillon", "komondor", "basenji"]):
            p = Path(os.environ.get("TMPDIR", "/tmp"))/f"parity-{os.getpid()}-{i}.jpg"; p.write_bytes(jpeg_bytes(photo(b, i, (333, 250)))); files.append(p)
    predictor = Predictor.from_dir(zero_shot_dir, backend="onnxruntime")
    torch_top1 = predict_probs(create_model(predictor.card.arch, "all"), files, predictor.spec).argmax(1)
    onnx = predictor.predict(files, top_k=1)
    assert [predictor.classes[i] for i in torch_top1] == [a["top_k"][0]["breed"] for a in onnx]


def test_openvino_and_onnxruntime_agree(zero_shot_dir):
    from dog_breed_classifier.inference import Predictor, available_backends
    if "openvino" not in available_backends(): pytest.skip("openvino is not installed")
    photos = [photo(b, 5, (256, 256)) for b in ["pug", "beagle", "chow"]]
    a = Predictor.from_dir(zero_shot_dir, backend="openvino", precision="fp32").predict(photos)
    b = Predictor.from_dir(zero_shot_dir, backend="onnxruntime", precision="fp32").predict(photos)
    for x, y in zip(a, b):
        assert [t["breed"] for t in x["top_k"][:3]] == [t["breed"] for t in y["top_k"][:3]]
        assert abs(x["dog_probability"] - y["dog_probability"]) < 1e-3
    assert np.isclose(a[0]["top_k"][0]["probability"], b[0]["top_k"][0]["probability"], atol=1e-3)


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="reads /proc/PID/maps (Linux)")
def test_first_start_builds_the_zero_shot_model_without_loading_torch_into_the_server(tmp_path):
    cache = tmp_path/"empty-cache"
    s = Server("--store-url", f"sqlite:///{tmp_path}/p.db", cwd=tmp_path, env={"DOG_BREED_CACHE": str(cache)})
    try:
        h = httpx.get(s.url + "/health").json()
        assert h["status"] == "ok" and "zero-shot" in h["model_selection"] and (cache/"zero_shot"/f"{DEFAULT_ARCH}-fp32"/"model.onnx").is_file()
        maps = Path(f"/proc/{s.proc.pid}/maps").read_text()
        assert "libtorch" not in maps and ("onnxruntime" in maps or "openvino" in maps)
    finally: s.stop()
    assert "building the zero-shot model once" in s.log.read_text()


def test_load_test_script_runs_locust_bounded_and_every_success_is_logged(tmp_path, cache_dir):
    "benchmarks/load_test.py for real, small: a server, locust headless, the log checked."
    env = {**os.environ, "DOG_BREED_CACHE": str(cache_dir)}
    res = subprocess.run([sys.executable, str(REPO/"benchmarks"/"load_test.py"), "--requests", "30", "--users", "4",
                          "--max-seconds", "90", "--results", str(tmp_path)], capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    summary = json.loads((tmp_path/"load_test.json").read_text())
    assert summary["requests"] == 30 and summary["failures"] == 0 and summary["rows_stored"] == 30, res.stdout[-2000:] + res.stderr[-3000:]
    assert summary["sqlite_integrity"] == "ok"


def test_first_inferences_from_several_threads_do_not_hang(zero_shot_dir):
    "OpenVINO deadlocked now and then when fresh threads ran their first inferences at once (as a new server does)."
    from dog_breed_classifier.inference import Predictor, available_backends
    def predict_at_once(predictor) -> int:
        done = []
        threads = [threading.Thread(target=lambda i=i: done.append(predictor.predict([photo("pug", i, (200, 200))])), daemon=True)
                   for i in range(4)]
        for t in threads: t.start()
        for t in threads: t.join(30)
        return len(done)
    for backend in available_backends():
        for _ in range(4):
            assert predict_at_once(Predictor.from_dir(zero_shot_dir, backend=backend)) == 4, f"{backend}: first inferences hung"


def test_when_the_zero_shot_model_cannot_be_built_the_server_starts_and_says_why(tmp_path):
    (tmp_path/"not-a-folder").write_text("a file where the cache folder should be")
    s = Server("--store-url", f"sqlite:///{tmp_path}/p.db", cwd=tmp_path, env={"DOG_BREED_CACHE": str(tmp_path/"not-a-folder")})
    try:
        r = httpx.get(s.url + "/health")
        assert r.status_code == 503 and "building the zero-shot model failed" in r.json()["model_error"]
    finally: s.stop()
