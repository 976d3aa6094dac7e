"""The container images, built and started for real, offline: buildah builds the Dockerfiles from a Debian base image
that debootstrap makes, pip inside reads a wheelhouse made here (deploy/offline_images.py) — for the serving image,
exactly the files of its hashed lock, installed with --require-hashes. The serving image is started on a free
loopback port and must answer every route as the user it declares, within its size budget, with no Evidently in
it: the drift job (`dog-breed drift`, here run beside the container on its /data volume) records the verdict that
the container's /drift then serves. The drift job's own image is built only with DOG_BREED_TEST_DRIFT_IMAGE=1.

Needs Debian's buildah and debootstrap, and root (`.ci/run` installs them; elsewhere these tests skip). The base image
and the wheels are kept between runs under ~/.cache/dog_breed_classifier/containers (DOG_BREED_IMAGE_CACHE); the
images built here are removed afterwards. The pipeline image (torch: several GB, many minutes) is built, and
`dvc repro` run inside it, only with DOG_BREED_TEST_PIPELINE_IMAGE=1."""
from __future__ import annotations

import json
import os
import time

import httpx
import offline_images as images  # deploy/offline_images.py (conftest puts deploy/ on the path)
import pytest

from conftest import jpeg_bytes, photo, run_cli

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(bool(images.missing_tools()), reason=f"needs {', '.join(images.missing_tools())} "
                                 "(apt-get install buildah debootstrap; .ci/run installs them)"),
              pytest.mark.skipif(os.geteuid() != 0, reason="debootstrap and buildah's chroot isolation need root")]

SERVING_TAG = "localhost/dog-breed-serve:test"
PIPELINE_TAG = "localhost/dog-breed-train:test"
# the serving image's size budget: Debian + Python, OpenVINO (trimmed to its CPU plugin and ONNX frontend), the API,
# Gradio, pandas, NumPy, the PostgreSQL driver. Evidently, a second runtime, torch, build tools or a pip cache sneaking
# in would break it (the image was ~1.4 GB with Evidently and both runtimes)
SERVING_SIZE_BUDGET = 500e6


@pytest.fixture(scope="module")
def store() -> images.ImageStore:
    cache = images.default_cache()
    cache.mkdir(parents=True, exist_ok=True)
    store = images.ImageStore(cache)
    images.make_base_image(store)
    return store


@pytest.fixture(scope="module")
def serving_image(store, zero_shot_dir, tmp_path_factory):
    "The serving image with the zero-shot model baked in (its torch weights too, which the build must drop)."
    work = tmp_path_factory.mktemp("serving")
    seconds = images.build_serving_image(store, zero_shot_dir, SERVING_TAG, work, log=work/"build.log")
    print(f"\nserving image built in {seconds:.0f} s, {store.size(SERVING_TAG)/1e6:.0f} MB")
    yield SERVING_TAG
    store.remove_image(SERVING_TAG)


@pytest.fixture(scope="module")
def container(store, serving_image, tmp_path_factory):
    log = tmp_path_factory.mktemp("run")/"container.log"
    with images.start_container(store, serving_image, log=log) as box:
        print(f"healthy {time.monotonic() - box.started_at:.1f} s after the start")
        yield box
    # stopped (SIGTERM to its processes) and removed, having logged no traceback
    with pytest.raises(httpx.TransportError): httpx.get(box.url + "/health", timeout=2)
    assert box.name not in store("containers", "--format", "{{.ContainerName}}").split()
    assert "Traceback" not in log.read_text(), log.read_text()[-3000:]


def test_serving_image_declares_how_to_run_it(store, serving_image):
    config = store.config(serving_image)
    assert config["User"] == "10001"                                     # not root
    assert "8000/tcp" in config["ExposedPorts"] and "/data" in config["Volumes"]
    assert "dog-breed serve --host 0.0.0.0" in " ".join(config["Cmd"])
    env = dict(e.split("=", 1) for e in config["Env"])
    assert env["PORT"] == "8000" and env["DOG_BREED_STORE_URL"] == "sqlite:////data/predictions.db"
    assert "/live" in " ".join(config["Healthcheck"]["Test"])            # liveness; kept: built in Docker format
    size = store.size(serving_image)
    assert size < SERVING_SIZE_BUDGET, f"the serving image grew to {size/1e9:.2f} GB"


def test_serving_container_answers_health_predict_metrics_and_ui(container, zero_shot_dir):
    health = httpx.get(container.url + "/health").json()
    assert health["status"] == "ok" and health["model_loaded"] and health["store_writable"]
    answer = httpx.post(container.url + "/predict", files={"file": ("dog.jpg", jpeg_bytes(photo("pug")), "image/jpeg")},
                        timeout=60)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    classes = json.loads((zero_shot_dir/"model_card.json").read_text())["classes"]
    assert len(body["top_k"]) == 5 and all(k["breed"] in classes for k in body["top_k"]) and body["prediction_id"]
    refused = httpx.post(container.url + "/predict", files={"file": ("notes.txt", b"not a photo", "text/plain")})
    assert refused.status_code == 415 and refused.json()["reason"] == "not_an_image"
    metrics = httpx.get(container.url + "/metrics").text
    assert "dogbreed_predictions_total" in metrics
    assert httpx.get(container.url + "/ui/", follow_redirects=True).status_code == 200   # the Gradio demo
    assert httpx.get(container.url + "/model").json()["model_version"] == health["model_version"]


def test_serving_container_runs_as_its_user_logs_to_the_volume_and_passes_its_healthcheck(store, container):
    who = container.run("id", "-u")
    assert who.returncode == 0 and who.stdout.strip() == "10001", who.stderr
    count = container.run("python", "-c", "import sqlite3; "
                          "print(sqlite3.connect('/data/predictions.db').execute('select count(*) from predictions').fetchone()[0])")
    assert count.returncode == 0 and int(count.stdout) >= 1, count.stderr   # the /predict above, in the /data volume
    check = store.config(SERVING_TAG)["Healthcheck"]["Test"]
    assert check[0] == "CMD"
    res = container.run("env", f"PORT={container.url.rsplit(':', 1)[1]}", *check[1:])   # the image's own HEALTHCHECK
    assert res.returncode == 0, res.stderr


def test_serving_image_has_no_torch_build_tools_or_caches(container):
    probe = container.run("python", "-c", "import importlib.util as u, os, shutil; print(u.find_spec('torch') is None, "
                          "shutil.which('gcc') is None, os.path.exists('/root/.cache/pip'), sorted(os.listdir('/opt/model')))")
    assert probe.returncode == 0, probe.stderr
    no_torch, no_gcc, pip_cache, model_files = probe.stdout.strip().split(" ", 3)
    assert (no_torch, no_gcc, pip_cache) == ("True", "True", "False")
    assert "model.safetensors" not in model_files and "model.onnx" in model_files


def test_serving_container_logs_to_postgresql(store, serving_image, container, postgres_server, tmp_path):
    "The Cloud Run recipe: several replicas share one PostgreSQL, named by DOG_BREED_STORE_URL (a second server)."
    import sqlalchemy as sa

    from conftest import new_postgres_database
    url = new_postgres_database(postgres_server)
    with images.start_container(store, serving_image, env={"DOG_BREED_STORE_URL": url}, log=tmp_path/"run.log",
                                reuse=container.name) as box:
        answer = httpx.post(box.url + "/predict", files={"file": ("dog.jpg", jpeg_bytes(photo("beagle")), "image/jpeg")},
                            timeout=60)
        assert answer.status_code == 200, answer.text
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        ids = [row[0] for row in conn.exec_driver_sql("select id from predictions")]
    engine.dispose()
    assert ids == [answer.json()["prediction_id"]]


def test_serving_image_has_one_runtime_and_no_drift_stack(container):
    "OpenVINO serves (the default RUNTIME); ONNX Runtime, Evidently and its scientific stack stay out of the image."
    probe = container.run("python", "-c", "import importlib.util as u; print(*(u.find_spec(m) is not None for m in "
                          "('openvino', 'onnxruntime', 'evidently', 'sklearn', 'scipy', 'pyarrow', 'pip')))")
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.split() == ["True", "False", "False", "False", "False", "False", "False"]
    model = httpx.get(container.url + "/model").json()
    assert model["runtime"]["backend"] == "openvino", model["runtime"]


def test_feedback_quality_and_drift_from_the_job_beside_the_container(container, zero_shot_dir, tmp_path):
    "Every route answers; the drift job — not the server — computes drift and records it where the server reads it."
    answer = httpx.post(container.url + "/predict", files={"file": ("dog.jpg", jpeg_bytes(photo("pug")), "image/jpeg")},
                        timeout=60).json()
    said = httpx.post(container.url + "/feedback", json={"prediction_id": answer["prediction_id"], "breed": "pug"})
    assert said.status_code == 201, said.text
    assert httpx.get(container.url + "/quality").status_code == 200
    before = httpx.get(container.url + "/drift").json()
    assert before["status"] in ("not_checked", "no_reference") and "message" in before
    reference = tmp_path/"typical"
    reference.mkdir()
    for i in range(12): photo("pug", i).save(reference/f"{i}.jpg")
    log = container.host_path("/data/predictions.db")   # the server's log, seen from this machine
    job = run_cli("drift", "--store-url", f"sqlite:///{log}", "--reference", reference,
                  "--model-dir", zero_shot_dir, "--out", tmp_path/"drift.html", "--quiet", cwd=tmp_path)
    assert job.returncode == 0 and "not enough data" in job.stdout, job.stdout + job.stderr   # a few predictions so far
    served = httpx.get(container.url + "/drift").json()
    assert served["status"] == "not_enough_data" and served["check_id"] >= 1, served
    page = httpx.get(container.url + "/drift", params={"format": "html"})
    assert page.status_code == 200 and "not enough data" in page.text.lower()


@pytest.mark.skipif(os.environ.get("DOG_BREED_TEST_DRIFT_IMAGE") != "1",
                    reason="the drift job's image carries Evidently (~1.5 GB): set DOG_BREED_TEST_DRIFT_IMAGE=1")
def test_drift_image_runs_the_job_on_the_servers_log(store, container, zero_shot_dir, tmp_path):
    "The Dockerfile's drift target, run as its user on the serving container's log: the verdict /drift then serves."
    tag = "localhost/dog-breed-drift:test"
    seconds = images.build_serving_image(store, zero_shot_dir, tag, tmp_path/"drift", log=tmp_path/"build.log",
                                         build_args={"TARGET": "drift"})
    print(f"\ndrift image built in {seconds:.0f} s, {store.size(tag)/1e6:.0f} MB")
    try:
        assert store.config(tag)["User"] == "10001"
        reference = tmp_path/"typical"
        reference.mkdir()
        for i in range(12): photo("beagle", i).save(reference/f"{i}.jpg")
        reference.chmod(0o755)
        log_dir = container.host_path("/data/predictions.db").parent
        res = images.run_in_image(store, tag, ["dog-breed", "drift", "--store-url", "sqlite:////log/predictions.db",
                                               "--reference", "/reference", "--model-dir", "/opt/model", "--out",
                                               "/tmp/drift.html"], mounts={log_dir: "/log", reference: "/reference"},
                                  log=tmp_path/"job.log")
        output = (tmp_path/"job.log").read_text()
        assert res.returncode == 0 and "recorded as check" in output and "Traceback" not in output, output[-3000:]
        served = httpx.get(container.url + "/drift").json()
        assert served["status"] == "not_enough_data" and served["reference"]["rows"] == 12, served
    finally:
        store.remove_image(tag)


@pytest.mark.skipif(os.environ.get("DOG_BREED_TEST_PIPELINE_IMAGE") != "1",
                    reason="the pipeline image has torch (several GB): set DOG_BREED_TEST_PIPELINE_IMAGE=1")
def test_pipeline_image_runs_dvc_repro_and_its_model_serves_from_the_serving_image(store, tmp_path):
    "The whole container path: the pipeline image trains on the sample, the serving image bakes in that model."
    seconds = images.build_pipeline_image(store, PIPELINE_TAG, tmp_path/"pipeline", log=tmp_path/"build.log")
    print(f"\npipeline image built in {seconds:.0f} s, {store.size(PIPELINE_TAG)/1e9:.1f} GB")
    try:
        clone = images.fresh_clone(tmp_path/"repo")
        started = time.perf_counter()
        res = images.run_in_image(store, PIPELINE_TAG, ["dvc", "repro"], mounts={clone: "/work"}, workdir="/work",
                                  log=tmp_path/"repro.log")
        output = (tmp_path/"repro.log").read_text()
        assert res.returncode == 0, output[-3000:]
        print(f"dvc repro inside it: {time.perf_counter() - started:.0f} s")
        for stage in ("sample", "prepare", "train", "evaluate", "export"): assert f"Running stage '{stage}'" in output
        card = json.loads((clone/"models/serving/model_card.json").read_text())
        assert card["training"]["data"]["source"] == "sample" and (clone/"models/serving/model.onnx").is_file()
    finally:
        store.remove_image(PIPELINE_TAG)
    images.build_serving_image(store, clone/"models/serving", "localhost/dog-breed-serve:trained", tmp_path/"serving",
                               log=tmp_path/"serving-build.log")
    try:
        with images.start_container(store, "localhost/dog-breed-serve:trained", log=tmp_path/"run.log") as box:
            assert httpx.get(box.url + "/model").json()["model_version"] == card["model_version"]
            answer = httpx.post(box.url + "/predict", files={"file": ("dog.jpg", jpeg_bytes(photo("pug")), "image/jpeg")},
                                timeout=60).json()
            assert {k["breed"] for k in answer["top_k"]} <= set(card["classes"]) and len(card["classes"]) == 5
    finally:
        store.remove_image("localhost/dog-breed-serve:trained")
