"""int8 per runtime, end to end: export's verdict on real photos, the `--precision` switch on a real server and on
`dog-breed predict`, and the zero-shot model's int8 built from calibration photos."""
from __future__ import annotations

import json
import shutil

import httpx
import pytest

from conftest import DEV_PHOTOS, Server, jpeg_bytes, photo, run_cli
from dog_breed_classifier.core import DEFAULT_ARCH
from dog_breed_classifier.export import int8_verdict, quantize_openvino_int8
from dog_breed_classifier.images import model_batch
from dog_breed_classifier.inference import Predictor, available_backends
from dog_breed_classifier.model_card import read_model_card

pytestmark = pytest.mark.slow   # int8 builds and a real server: not the fast tier

TRAIN_PHOTOS = DEV_PHOTOS.parent/"stanford_dogs_train"
needs_openvino = pytest.mark.skipif("openvino" not in available_backends(), reason="OpenVINO is not installed")


@pytest.fixture(scope="module")
def with_openvino_int8(zero_shot_dir, tmp_path_factory):
    "The zero-shot folder with an OpenVINO int8 model the card names (calibrated on drawn dogs: the switch, not accuracy)."
    folder = tmp_path_factory.mktemp("int8")/"serving"
    shutil.copytree(zero_shot_dir, folder)
    p = Predictor.from_dir(folder, precision="fp32")
    calibration = model_batch([photo(b, k, (300, 260)) for k, b in enumerate(["pug", "beagle", "chow", "papillon"] * 4)],
                              p.spec)
    quantize_openvino_int8(folder/"model.onnx", folder/"model.int8.xml", calibration)
    card = read_model_card(folder); card.files.int8_openvino = "model.int8.xml"; card.write(folder)
    return folder


@needs_openvino
def test_the_precision_switch_on_a_real_server(with_openvino_int8, tmp_path):
    files = {"file": ("pug.jpg", jpeg_bytes(photo("pug", 7, (320, 280))), "image/jpeg")}
    answers = {}
    for precision in ("auto", "fp32"):
        s = Server("--model-dir", with_openvino_int8, "--store-url", f"sqlite:///{tmp_path}/{precision}.db", "--no-ui",
                   "--backend", "openvino", "--precision", precision, cwd=tmp_path)
        try:
            health, card = httpx.get(s.url + "/health").json(), httpx.get(s.url + "/model").json()
            answers[precision] = httpx.post(s.url + "/predict", files=files).json()
        finally: s.stop()
        expected = ("int8", "model.int8.xml") if precision == "auto" else ("fp32", "model.onnx")
        assert (health["precision"], card["runtime"]["precision"], card["runtime"]["file"]) == (expected[0], *expected)
    fp32 = Predictor.from_dir(with_openvino_int8, backend="openvino", precision="fp32").predict([files["file"][1]])[0]
    assert [t["breed"] for t in answers["fp32"]["top_k"]] == [t["breed"] for t in fp32["top_k"]]
    assert answers["fp32"]["top_k"][0]["probability"] == pytest.approx(fp32["top_k"][0]["probability"], abs=1e-5)


def test_asking_for_int8_that_export_did_not_keep_is_refused_in_a_sentence(zero_shot_dir, tmp_path):
    (tmp_path/"pug.jpg").write_bytes(jpeg_bytes(photo("pug", 1, (300, 260))))
    res = run_cli("predict", "--model-dir", zero_shot_dir, "--precision", "int8", tmp_path/"pug.jpg", cwd=tmp_path)
    assert res.returncode != 0 and "Traceback" not in res.stderr
    assert "has no int8 file for" in res.stderr and "int8 was not tried" in res.stderr and "precision auto or fp32" in res.stderr


def photo_subset(tmp_path, per_breed_train: int, per_breed_dev: int):
    "A DOG_BREED_PHOTOS-shaped folder of links to the first few real photos of each breed."
    for which, n in (("stanford_dogs_train", per_breed_train), ("stanford_dogs_dev", per_breed_dev)):
        for breed in sorted((DEV_PHOTOS.parent/which/"Images").iterdir()):
            (tmp_path/which/"Images"/breed.name).mkdir(parents=True)
            for f in sorted(breed.glob("*.jpg"))[:n]: (tmp_path/which/"Images"/breed.name/f.name).symlink_to(f)
    return tmp_path


@pytest.mark.skipif(not (DEV_PHOTOS/"Images").is_dir() or not (TRAIN_PHOTOS/"Images").is_dir(),
                    reason="needs the real Stanford photos (../shared/data or $DOG_BREED_PHOTOS)")
def test_zero_shot_int8_from_real_photos_is_judged_and_served_as_the_card_says(tmp_path):
    photos, cache = photo_subset(tmp_path/"photos", 2, 1), tmp_path/"cache"
    dev = sorted((photos/"stanford_dogs_dev"/"Images").glob("*/*.jpg"))[::12]
    built = run_cli("predict", "--json", "--calibration-photos", photos, *dev, cwd=tmp_path, timeout=900,
                    env={"DOG_BREED_CACHE": str(cache)})
    assert built.returncode == 0, built.stderr
    folder = cache/"zero_shot"/f"{DEFAULT_ARCH}-int8"   # the cache key says which build it is
    card = read_model_card(folder)
    assert card.int8.machine and card.int8.openvino and card.int8.onnxruntime
    for runtime in ("openvino", "onnxruntime"):
        report, file = getattr(card.int8, runtime), getattr(card.files, f"int8_{runtime}")
        # half the 240 training photos calibrate, the other half decide; the 120 dev photos only report
        assert (report.validation_photos, report.test_photos, report.non_dog_images) == (120, 120, 64)
        assert report.megabytes["int8"] < report.megabytes["fp32"] / 2 and "validation photos, paired" in report.decided_on
        assert set(report.top1) == {"fp32", "int8"} and report.top1["fp32"] > 0.5   # reported on the test photos
        v = report.validation   # the decision again, from what the card recorded of the paired comparison
        agree = [True] * (report.validation_photos - v["fp32_only"] - v["int8_only"])
        right = dict(fp32=[True] * v["fp32_only"] + [False] * v["int8_only"] + agree,
                     int8=[False] * v["fp32_only"] + [True] * v["int8_only"] + agree)
        figures = {p: dict(top1=v["top1"][p], log_loss=v["log_loss"][p], no_dog_caught=report.no_dog_caught[p],
                           right=right[p]) for p in ("fp32", "int8")}
        assert report.kept == int8_verdict(figures["fp32"], figures["int8"], report.images_per_second)[0] == (file is not None)
        assert report.kept == (folder/SERVING_NAMES[runtime]).is_file()
    auto, fp32 = Predictor.from_dir(folder), Predictor.from_dir(folder, precision="fp32")
    assert auto.precision == ("int8" if card.int8.kept() else "fp32")
    answers = [json.loads(line) for line in built.stdout.splitlines()]
    assert [a["top_k"][0]["breed"] for a in answers] == [a["top_k"][0]["breed"] for a in auto.predict(dev)]
    pinned = run_cli("predict", "--json", "--precision", "fp32", "--model-dir", folder, *dev, cwd=tmp_path)
    assert [json.loads(line)["top_k"] for line in pinned.stdout.splitlines()] == [a["top_k"] for a in fp32.predict(dev)]


SERVING_NAMES = {"openvino": "model.int8.xml", "onnxruntime": "model.int8.onnx"}
