"""The library in-process, without servers, builds or pipelines: the fast tier (`pytest -m "not slow"`).

What a contributor changes most — the model contract, the settings, the model card, the answers, the API's routes
(FastAPI's in-process client), drift on generated data, the gate, the Space folder — checked in seconds. The tests
that start real servers, containers, DVC or training runs are marked `slow` and run after these in CI.
"""
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from conftest import jpeg_bytes, photo
from dog_breed_classifier.api import ServeSettings, UploadLimits, create_app
from dog_breed_classifier.augment import prepare
from dog_breed_classifier.core import GateSettings, ParamsError, Tolerances, load_params
from dog_breed_classifier.delivery import ModelComparison, ModelScores, data_report
from dog_breed_classifier.images import MAX_UPLOAD_BYTES, InputSpec, model_batch
from dog_breed_classifier.inference import Predictor
from dog_breed_classifier.loop import gate_checks
from dog_breed_classifier.measure import paired_timings, photo_files, rates, sample_photos
from dog_breed_classifier.model import model_input_spec
from dog_breed_classifier.model_card import CardInput, TrainedModel, model_card_markdown, read_model_card
from dog_breed_classifier.monitoring import PredictionStore
from dog_breed_classifier.served_model import ModelChoice

ARCHS = ["tf_efficientnet_lite0", "tf_efficientnet_lite1", "tf_efficientnet_lite2"]


# --- one model contract: training, the card and serving see a photo the same way

@pytest.mark.parametrize("arch", ARCHS)
def test_the_input_spec_survives_the_card(arch):
    spec = model_input_spec(arch)
    card_input = CardInput.from_json(json.loads(json.dumps(CardInput.of(spec).to_json())))
    assert card_input.spec == spec and card_input.resize_shorter_side == spec.resize_shorter_side


@pytest.mark.parametrize("arch", ARCHS)
def test_the_trained_model_record_round_trips(arch):
    spec = model_input_spec(arch)
    record = TrainedModel(arch=arch, classes=["pug", "beagle"], mean=list(spec.mean), std=list(spec.std),
                          input_size=spec.size, crop_fraction=spec.crop_fraction, best_epoch=3)
    again = TrainedModel.from_json(json.loads(json.dumps(record.to_json())))
    assert again == record and again.spec == spec and again.training().best_epoch == 3


def test_a_trained_model_record_keeps_keys_it_does_not_know():
    raw = dict(arch="a", classes=["pug"], mean=[0.5] * 3, std=[0.5] * 3, input_size=64, from_the_future=1)
    assert TrainedModel.from_json(raw).to_json()["from_the_future"] == 1


@pytest.mark.parametrize("source", ["pil", "bytes", "path"])
def test_model_batch_takes_photos_in_any_form(source, tmp_path):
    img, spec = photo("pug", 1, (200, 150)), InputSpec(64, (0.5,) * 3, (0.25,) * 3)
    (tmp_path/"p.jpg").write_bytes(jpeg_bytes(img, quality=100))
    given = {"pil": img, "bytes": jpeg_bytes(img, quality=100), "path": tmp_path/"p.jpg"}[source]
    batch = model_batch([given], spec)
    assert batch.shape == (1, 3, 64, 64) and batch.dtype == np.float32
    if source == "pil": np.testing.assert_allclose(batch, model_batch([img], spec))


def test_the_predictor_reads_the_card_it_serves(zero_shot_dir):
    p = Predictor.from_dir(zero_shot_dir)
    assert (p.spec, p.classes, p.model_version) == (p.card.input.spec, p.card.classes, p.card.model_version)
    answer = p.predict([jpeg_bytes(photo("pug", 2, (300, 260)))])[0]
    assert answer["model_version"] == p.card.model_version and len(answer["top_k"]) == 5


# --- settings declared once

def test_gate_tolerances_come_from_params_yaml(tmp_path):
    (tmp_path/"params.yaml").write_text("gate:\n  promote:\n    max_slowdown: 2.0\n")
    gate = load_params(tmp_path/"params.yaml").gate
    assert (gate.promote.max_slowdown, gate.promote.max_top1_drop) == (2.0, 0.005)   # the rest: promote's defaults
    assert gate.check_model == GateSettings().check_model


@pytest.mark.parametrize("bad, says", [("gate:\n  promote:\n    max_slowdwn: 2\n", "did you mean gate.promote.max_slowdown"),
                                       ("gate:\n  check_model:\n    max_top1_drop: 2\n", "out of range"),
                                       ("gate:\n  nightly: {}\n", "allowed keys in gate: check_model, promote")])
def test_a_bad_gate_setting_is_named(tmp_path, bad, says):
    (tmp_path/"params.yaml").write_text(bad)
    with pytest.raises(ParamsError, match=says): load_params(tmp_path/"params.yaml")


def test_the_repositorys_params_yaml_states_both_uses():
    gate = load_params(Path(__file__).resolve().parents[1]/"params.yaml").gate
    assert gate == GateSettings()   # params.yaml writes out the defaults: one place to read them


def scores(top1: float, ips: float, **kw) -> ModelScores:
    return ModelScores(model_dir=Path("m"), model_version=f"v{top1}", breeds_known=120, top1=top1, top5=0.98,
                       log_loss=0.4, ece=0.02, no_dog_caught=1.0, dogs_rejected=0.0, images_per_second=ips, **kw)


@pytest.mark.parametrize("top1, ips, failed", [(0.86, 100.0, []), (0.80, 100.0, ["top-1"]), (0.86, 50.0, ["speed"])])
def test_the_gate_judges_with_its_tolerances(top1, ips, failed):
    c = ModelComparison(candidate=scores(top1, ips), served=scores(0.86, 100.0), photos=100, data_source="stanford",
                        split="test")
    assert [k.name for k in gate_checks(c, GateSettings().promote) if not k.ok] == failed
    assert all(k.ok for k in gate_checks(c, replace(Tolerances(), max_top1_drop=0.1, max_slowdown=3.0)))


def test_the_upload_limit_is_one_number():
    assert UploadLimits().max_upload_bytes == MAX_UPLOAD_BYTES == 10 * 2**20
    assert ServeSettings().upload == UploadLimits()


# --- the data report, in-process

def test_a_prepared_sample_passes_the_data_report(tmp_path):
    (tmp_path/"params.yaml").write_text("data:\n  workers: 1\n  sample:\n    images_per_breed: 20\naugment:\n  offline: []\n")
    prepare(load_params(tmp_path/"params.yaml"), root=tmp_path, progress=False)
    report = data_report(tmp_path/"data"/"processed")
    assert report.ok, report.markdown()
    assert [c.name for c in report.checks] == ["quarantine", "class balance", "every breed in every split",
                                               "no photo in two splits"]


# --- the API in-process (FastAPI's test client: no server, no port)

@pytest.fixture(scope="module")
def client(zero_shot_dir, tmp_path_factory):
    store = PredictionStore(f"sqlite:///{tmp_path_factory.mktemp('api')}/p.db")
    app = create_app(None, store, choice=ModelChoice(zero_shot_dir, "the test's"), ui=False,
                     upload=UploadLimits(max_upload_bytes=200_000))
    with TestClient(app) as c: yield c


def test_health_says_why_this_model(client):
    body = client.get("/health").json()
    assert body["status"] == "ok" and body["model_selection"] == "the test's"


def test_a_prediction_is_answered_and_logged(client):
    r = client.post("/predict", files={"file": ("d.jpg", jpeg_bytes(photo("beagle", 3, (320, 280))), "image/jpeg")})
    assert r.status_code == 200, r.text
    assert r.json()["prediction_id"] in set(client.app.state.service.store.recent(5).id)   # committed before answered


@pytest.mark.parametrize("content, status, reason", [(b"hello, not a photo", 415, "not_an_image"),
                                                     (b"\xff\xd8" + b"0" * 300_000, 413, "too_large_upload")])
def test_a_client_mistake_gets_its_reason(client, content, status, reason):
    r = client.post("/predict", files={"file": ("x.jpg", content, "image/jpeg")})
    assert (r.status_code, r.json()["reason"]) == (status, reason)


def test_drift_before_the_first_check(client):
    assert client.get("/drift").json()["status"] == "not_checked"


def test_no_model_is_a_503_with_the_reason(tmp_path):
    app = create_app(None, PredictionStore(f"sqlite:///{tmp_path}/p.db"), ui=False,
                     choice=ModelChoice(None, "", error="models/serving is empty"))
    with TestClient(app) as c:
        r = c.get("/health")
        assert r.status_code == 503 and r.json()["model_error"] == "models/serving is empty"


# --- the card in words, the harness

def test_the_card_in_words_names_the_imagenet_caveat(zero_shot_dir):
    text = model_card_markdown(read_model_card(zero_shot_dir))
    assert "ImageNet" in text and "zero-shot" in text


def test_paired_timings_rotate_and_rate():
    order = []
    seconds = paired_timings({"a": lambda: order.append("a"), "b": lambda: order.append("b")}, rounds=3, warmup=False)
    assert order == ["a", "b", "b", "a", "a", "b"] and set(rates(seconds, 10)) == {"a", "b"}


def test_sample_photos_are_real_when_there_are(tmp_path):
    (tmp_path/"Images"/"n02085620-Chihuahua").mkdir(parents=True)
    (tmp_path/"Images"/"n02085620-Chihuahua"/"a.jpg").write_bytes(jpeg_bytes(photo("chihuahua")))
    assert photo_files(tmp_path) == [tmp_path/"Images"/"n02085620-Chihuahua"/"a.jpg"]
    assert sample_photos(1, tmp_path) == [(tmp_path/"Images"/"n02085620-Chihuahua"/"a.jpg").read_bytes()]
