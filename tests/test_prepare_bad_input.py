"""`dog-breed prepare` on real files: a source folder full of junk, user mistakes, and a run killed mid-way."""
from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from conftest import dog_breed_command, jpeg_bytes, photo, run_cli

pytestmark = pytest.mark.slow   # `dog-breed prepare` runs in processes: not the fast tier


def make_junk_folder(src: Path) -> dict[str, str | None]:
    """A `folder` source mixing good photos with every kind of bad file.
    Returns {relative path: expected quarantine reason, or None when the file must be used}."""
    expected = {}
    for breed in ["pug", "golden_retriever"]:
        (src/breed).mkdir(parents=True)
        for i in range(6):
            photo(breed, i).save(src/breed/f"{i}.jpg", quality=92)
            expected[f"{breed}/{i}.jpg"] = None
    pug, golden = src/"pug", src/"golden_retriever"
    # files that must be converted and used
    rgba = photo("pug", 10).convert("RGBA")
    alpha = np.asarray(rgba).copy(); alpha[:, :40, 3] = 0
    Image.fromarray(alpha, "RGBA").save(pug/"alpha.png")
    frames = [Image.new("RGB", (96, 96), c) for c in [(220, 20, 20), (20, 220, 20), (20, 20, 220)]]
    frames[0].save(pug/"animated.gif", save_all=True, append_images=frames[1:], duration=100, loop=0)
    photo("golden_retriever", 11).convert("CMYK").save(golden/"cmyk.jpg", quality=95)
    Image.fromarray(np.full((80, 100), 30000, dtype=np.uint16)).save(golden/"grey16.png")
    exif = Image.Exif(); exif[0x0112] = 6      # stored landscape 160×128, to be shown rotated: 128×160
    (golden/"rotated.jpg").write_bytes(jpeg_bytes(photo("golden_retriever", 12), exif=exif))
    photo("pug", 13).convert("L").save(pug/"grey.jpg")
    expected.update({"pug/alpha.png": None, "pug/animated.gif": None, "golden_retriever/cmyk.jpg": None,
                     "golden_retriever/grey16.png": None, "golden_retriever/rotated.jpg": None, "pug/grey.jpg": None})
    # junk that must be quarantined, with its reason
    (pug/"notes.jpg").write_text("this is a text file with a .jpg name")
    (pug/"page.jpg").write_text("<!DOCTYPE html><html><body>404 not found</body></html>")
    (pug/"empty.jpg").write_bytes(b"")
    (golden/"truncated.jpg").write_bytes(jpeg_bytes(photo("golden_retriever", 14))[:700])
    Image.new("RGB", (1, 1), (9, 9, 9)).save(golden/"one_pixel.png")
    Image.new("L", (1200, 1000), 128).save(golden/"huge.png")          # over the max_pixels set below
    shutil.copy(pug/"0.jpg", pug/"copy of 0.jpg")
    expected.update({"pug/notes.jpg": "not_an_image", "pug/page.jpg": "not_an_image", "pug/empty.jpg": "empty_file",
                     "golden_retriever/truncated.jpg": "truncated", "golden_retriever/one_pixel.png": "too_small",
                     "golden_retriever/huge.png": "too_large", "pug/copy of 0.jpg": "duplicate"})
    return expected


def test_junk_corpus_is_quarantined_and_odd_photos_converted(project):
    expected = make_junk_folder(project/"photos")
    res = run_cli("prepare", "-q", "-S", "data.source=folder", "-S", "data.path=photos", "-S", "data.max_pixels=1000000",
                  "-S", "augment.offline=[]", cwd=project)
    assert res.returncode == 0, res.stderr
    out = project/"data"/"processed"
    labels = pd.read_csv(out/"labels.csv", keep_default_na=False)
    quarantine = pd.read_csv(out/"quarantine.csv")
    used = {p for p, r in expected.items() if r is None}
    assert set(labels.source) == used
    assert dict(zip(quarantine.path, quarantine.reason)) == {p: r for p, r in expected.items() if r}
    assert all(quarantine.message.str.len() > 10)
    # converted correctly, as stored
    stored = {s: Image.open(out/p) for s, p in zip(labels.source, labels.path)}
    assert all(im.mode == "RGB" for im in stored.values())
    assert stored["pug/alpha.png"].getpixel((5, 60))[0] > 235 and min(stored["pug/alpha.png"].getpixel((5, 60))) > 235  # white, not black
    assert stored["pug/animated.gif"].getpixel((48, 48))[0] > 180                                  # the first (red) frame
    assert stored["golden_retriever/rotated.jpg"].size == (128, 160)                               # EXIF applied
    assert abs(stored["golden_retriever/grey16.png"].getpixel((40, 40))[0] - 30000 / 257) <= 2     # scaled, not clipped
    cmyk = np.asarray(stored["golden_retriever/cmyk.jpg"], dtype=float).mean((0, 1))
    original = np.asarray(photo("golden_retriever", 11), dtype=float).mean((0, 1))
    assert np.abs(cmyk - original).max() < 25, (cmyk, original)
    notes = dict(zip(labels.source, labels.notes))
    assert "first of 3 frames" in notes["pug/animated.gif"] and "EXIF orientation 6" in notes["golden_retriever/rotated.jpg"]
    # the printed summary names what happened
    assert "quarantined 6" in res.stdout and "duplicates dropped: 1" in res.stdout


def _tree_digest(folder: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        if p.is_file(): h.update(str(p.relative_to(folder)).encode()); h.update(p.read_bytes())
    return h.hexdigest()


@pytest.fixture(scope="module")
def prepared_once(tmp_path_factory):
    root = tmp_path_factory.mktemp("prepared")
    (root/"params.yaml").write_text("data:\n  workers: 2\n")
    res = run_cli("prepare", "-q", "-S", "data.sample.images_per_breed=8", "-S", "augment.offline=[]", cwd=root)
    assert res.returncode == 0, res.stderr
    return root


@pytest.fixture
def prepared(prepared_once, tmp_path):
    "A project that already holds a prepared dataset (which failures must leave alone)."
    shutil.copytree(prepared_once, tmp_path/"project")
    return tmp_path/"project"


@pytest.mark.parametrize("overrides, says", [
    (["data.source=folder", "data.path=no/such/folder"], "data.path 'no/such/folder' does not exist"),
    (["data.source=folder", "data.path=unknown_breeds"], "unknown breed names in"),
    (["data.source=folder", "data.path=empty"], "no photos found under"),
    (["data.source=folder", "data.path=only_junk"], "is a usable photo"),
    (["data.source=stanford", "data.path=empty/pug"], "the stanford source expects the Stanford Dogs layout"),
    (["data.source=kaggle", "data.path=empty"], "has no labels.csv"),
    (["data.image_size=big"], "data.image_size = 'big' is not allowed; use a whole number"),
    (["data.sourse=folder"], "unknown key data.sourse (did you mean data.source?)"),
    (["data.source=flickr"], "data.source = 'flickr' is not allowed; use one of: sample, kaggle, stanford, folder"),
])
def test_user_mistakes_give_one_line_and_change_nothing(prepared, overrides, says):
    (prepared/"unknown_breeds"/"labradoodle").mkdir(parents=True)
    (prepared/"unknown_breeds"/"Golden Retreiver").mkdir(parents=True)
    photo().save(prepared/"unknown_breeds"/"labradoodle"/"a.jpg")
    photo().save(prepared/"unknown_breeds"/"Golden Retreiver"/"b.jpg")
    (prepared/"empty"/"pug").mkdir(parents=True)
    (prepared/"only_junk"/"pug").mkdir(parents=True)
    (prepared/"only_junk"/"pug"/"x.jpg").write_text("junk")
    before = _tree_digest(prepared/"data"/"processed")
    args = [a for o in overrides for a in ("-S", o)]
    res = run_cli("prepare", "-q", *args, cwd=prepared)
    assert res.returncode == 2, (res.stdout, res.stderr)
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("dog-breed: error:"), res.stderr
    assert says in lines[0], lines[0]
    assert "Traceback" not in res.stderr
    assert _tree_digest(prepared/"data"/"processed") == before
    assert sorted(p.name for p in (prepared/"data").iterdir()) == ["processed", "raw"]   # no temporary folders


def test_unknown_breeds_error_suggests_close_names(prepared):
    (prepared/"photos"/"Golden Retreiver").mkdir(parents=True)
    photo().save(prepared/"photos"/"Golden Retreiver"/"a.jpg")
    res = run_cli("prepare", "-q", "-S", "data.source=folder", "-S", "data.path=photos", cwd=prepared)
    assert "'Golden Retreiver' (closest: golden_retriever" in res.stderr


def test_no_params_file_is_a_clear_error(tmp_path):
    res = run_cli("prepare", cwd=tmp_path)
    assert res.returncode == 2 and "no params.yaml found" in res.stderr and "Traceback" not in res.stderr


def test_killed_run_leaves_no_half_dataset_and_rerun_completes(prepared):
    "SIGKILL `prepare` mid-run: the previous dataset survives whole; the next run cleans up and completes."
    before = _tree_digest(prepared/"data"/"processed")
    args = ["prepare", "-q", "-S", "data.sample.images_per_breed=120", "-S", "data.workers=2"]
    proc = subprocess.Popen([*dog_breed_command(), *args], cwd=prepared, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    staging = None
    while time.time() < deadline and proc.poll() is None:
        tmp = list((prepared/"data").glob(".processed.tmp-*/.staging"))
        if tmp and len(list(tmp[0].iterdir())) > 20: staging = tmp[0]; break
        time.sleep(0.05)
    assert staging is not None, "prepare finished before it could be killed; make the run bigger"
    os.killpg(proc.pid, signal.SIGKILL); proc.wait()
    assert _tree_digest(prepared/"data"/"processed") == before           # the old dataset, whole
    assert list((prepared/"data").glob(".processed.tmp-*"))              # the killed run's leftovers…
    res = run_cli("prepare", "-q", "-S", "data.sample.images_per_breed=12", cwd=prepared)
    assert res.returncode == 0, res.stderr
    assert not list((prepared/"data").glob(".processed.*"))              # …are cleaned by the next run
    labels = pd.read_csv(prepared/"data"/"processed"/"labels.csv", keep_default_na=False)
    assert (labels.variant == "").sum() == 60 and all((prepared/"data"/"processed"/p).is_file() for p in labels.path)


def test_same_source_and_settings_give_the_same_bytes(tmp_path):
    "Outputs hold no timings or dates, and augmentation is seeded per photo: DVC caches a rerun once."
    digests = []
    for name in ("a", "b"):
        root = tmp_path/name; root.mkdir(); (root/"params.yaml").write_text("")
        res = run_cli("prepare", "-q", "-S", "data.sample.images_per_breed=10", cwd=root)
        assert res.returncode == 0, res.stderr
        digests.append(_tree_digest(root/"data"/"processed"))
    assert digests[0] == digests[1]
