"""Dataset downloads (Stanford tarballs, the Kaggle API) against a real HTTP server on 127.0.0.1 serving archives
built here. Nothing leaves the machine."""
from __future__ import annotations

import base64
import io
import tarfile
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pandas as pd
import pytest
from PIL import Image

from conftest import jpeg_bytes, photo, run_cli
from dog_breed_classifier.core import DogBreedError
from dog_breed_classifier.data import (
    download_file,
    download_kaggle_competition,
    download_stanford_dogs,
    extract_archive,
)

pytestmark = pytest.mark.slow   # a local HTTP server serves the downloads: not the fast tier

BREEDS = {"n02085620-Chihuahua": "chihuahua", "n02110958-pug": "pug"}
BOX = (20, 10, 140, 110)   # left, top, right, bottom in every annotation


def _tar(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        for name, data in members.items():
            info = tarfile.TarInfo(name); info.size = len(data); t.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, data in members.items(): z.writestr(name, data)
    return buf.getvalue()


def _annotation(folder: str, stem: str) -> bytes:
    l, t, r, b = BOX
    return (f"<annotation><filename>{stem}</filename><size><width>180</width><height>140</height><depth>3</depth></size>"
            f"<object><name>{folder.split('-', 1)[1]}</name><bndbox><xmin>{l}</xmin><ymin>{t}</ymin>"
            f"<xmax>{r}</xmax><ymax>{b}</ymax></bndbox></object></annotation>").encode()


def stanford_archives(n: int = 4) -> dict[str, bytes]:
    images, notes = {}, {}
    for folder, breed in BREEDS.items():
        synset = folder.split("-")[0]
        for i in range(n):
            stem = f"{synset}_{i}"
            images[f"Images/{folder}/{stem}.jpg"] = jpeg_bytes(photo(breed, i, (180, 140)))
            notes[f"Annotation/{folder}/{stem}"] = _annotation(folder, stem)
    return {"/stanford/images.tar": _tar(images), "/stanford/annotation.tar": _tar(notes)}


def kaggle_archive(n: int = 4) -> bytes:
    members, rows = {}, ["id,breed"]
    for breed in BREEDS.values():
        for i in range(n):
            image_id = f"{breed}{i:04d}"
            members[f"train/{image_id}.jpg"] = jpeg_bytes(photo(breed, 100 + i))
            rows.append(f"{image_id},{breed}")
    members["labels.csv"] = "\n".join(rows).encode()
    members["sample_submission.csv"] = b"id\n"
    return _zip(members)


class ArchiveServer:
    "A real HTTP server on 127.0.0.1: serves `files`, demands basic auth under /api/, can cut a download short."
    def __init__(self, files: dict[str, bytes], credentials=("dogfan", "s3cret")):
        files, token = dict(files), base64.b64encode(":".join(credentials).encode()).decode()
        self.requests = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a): pass
            def do_GET(self):
                outer.requests.append(self.path)
                if self.path.startswith("/api/") and self.headers.get("Authorization") != f"Basic {token}":
                    self.send_response(401); self.send_header("Content-Length", "0"); self.end_headers(); return
                data = files.get(self.path)
                if data is None:
                    self.send_response(404); self.send_header("Content-Length", "0"); self.end_headers(); return
                self.send_response(200)
                short = self.path.endswith("/cut.tar")
                self.send_header("Content-Length", str(len(data) + (5000 if short else 0)))
                self.end_headers()
                self.wfile.write(data)
                if short: self.wfile.flush(); self.connection.shutdown(2)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_port}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self): self.thread.start(); return self
    def __exit__(self, *exc): self.httpd.shutdown(); self.httpd.server_close()


@pytest.fixture(scope="module")
def server():
    files = {**stanford_archives(), "/api/v1/competitions/data/download-all/dog-breed-identification": kaggle_archive(),
             "/stanford/cut.tar": b"x" * 10_000}
    with ArchiveServer(files) as s: yield s


def test_download_stanford_then_prepare_with_boxes(server, project):
    "`data.download: true` fetches images.tar + annotation.tar, and `crop_to_boxes` crops to the annotated dog."
    res = run_cli("prepare", "-q", "-S", "data.source=stanford", "-S", "data.path=data/raw/stanford", "-S", "data.download=true",
                  "-S", "data.crop_to_boxes=true", "-S", "augment.offline=[]", "-S", "data.min_images_per_breed=1",
                  cwd=project, env={"DOG_BREED_STANFORD_URL": f"{server.url}/stanford"})
    assert res.returncode == 0, res.stderr
    assert (project/"data"/"raw"/"stanford"/"Images"/"n02110958-pug").is_dir()
    labels = pd.read_csv(project/"data"/"processed"/"labels.csv", keep_default_na=False)
    assert sorted(labels.breed.unique()) == ["chihuahua", "pug"] and len(labels) == 8
    assert set(zip(labels.width, labels.height)) == {(BOX[2] - BOX[0], BOX[3] - BOX[1])}
    assert all("cropped to box" in n for n in labels.notes)
    assert [p.name for p in (project/"data"/"raw").iterdir()] == ["stanford"]     # no partial downloads left


def test_kaggle_api_download_with_credentials_from_environment(server, project):
    env = {"DOG_BREED_KAGGLE_API": f"{server.url}/api/v1", "KAGGLE_USERNAME": "dogfan", "KAGGLE_KEY": "s3cret"}
    res = run_cli("prepare", "-q", "-S", "data.source=kaggle", "-S", "data.path=data/raw/kaggle", "-S", "data.download=true",
                  "-S", "augment.offline=[]", cwd=project, env=env)
    assert res.returncode == 0, res.stderr
    assert (project/"data"/"raw"/"kaggle"/"labels.csv").is_file()
    labels = pd.read_csv(project/"data"/"processed"/"labels.csv")
    assert labels.breed.value_counts().to_dict() == {"chihuahua": 4, "pug": 4}


def test_kaggle_wrong_key_is_refused_cleanly(server, project):
    env = {"DOG_BREED_KAGGLE_API": f"{server.url}/api/v1", "KAGGLE_USERNAME": "dogfan", "KAGGLE_KEY": "wrong"}
    res = run_cli("prepare", "-q", "-S", "data.source=kaggle", "-S", "data.path=data/raw/kaggle", "-S", "data.download=true",
                  cwd=project, env=env)
    assert res.returncode == 2 and "access refused (HTTP 401)" in res.stderr and "Traceback" not in res.stderr
    assert not (project/"data"/"raw"/"kaggle").exists()
    assert not [p for p in (project/"data"/"raw").iterdir() if p.name.startswith(".")]


def test_kaggle_without_credentials_says_how_to_provide_them(monkeypatch, tmp_path):
    for k in ("KAGGLE_USERNAME", "KAGGLE_KEY"): monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(tmp_path))
    with pytest.raises(DogBreedError, match="set KAGGLE_USERNAME and KAGGLE_KEY"):
        download_kaggle_competition(tmp_path/"kaggle", api="http://127.0.0.1:9")


def test_kaggle_json_credentials(server, monkeypatch, tmp_path):
    for k in ("KAGGLE_USERNAME", "KAGGLE_KEY"): monkeypatch.delenv(k, raising=False)
    (tmp_path/"kaggle.json").write_text('{"username": "dogfan", "key": "s3cret"}')
    monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(tmp_path))
    out = download_kaggle_competition(tmp_path/"kaggle", api=f"{server.url}/api/v1", progress=False)
    assert len(list((out/"train").glob("*.jpg"))) == 8


def test_http_errors_and_cut_downloads_leave_nothing(server, tmp_path):
    with pytest.raises(DogBreedError, match="HTTP 404"):
        download_file(f"{server.url}/nothing-here.tar", tmp_path/"a.tar", progress=False)
    with pytest.raises(DogBreedError, match="run again"):
        download_file(f"{server.url}/stanford/cut.tar", tmp_path/"b.tar", progress=False)
    with pytest.raises(DogBreedError, match="cannot download"):
        download_file("http://127.0.0.1:9/x.tar", tmp_path/"c.tar", progress=False, timeout=5)
    assert list(tmp_path.iterdir()) == []


def test_stanford_download_of_a_wrong_archive_is_refused(server, tmp_path):
    with pytest.raises(DogBreedError, match="HTTP 404"):
        download_stanford_dogs(tmp_path/"dogs", base_url=f"{server.url}/elsewhere", progress=False)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("kind", ["tar", "zip"])
def test_archives_cannot_write_outside_their_folder(tmp_path, kind):
    members = {"Images/ok.txt": b"fine", "../escaped.txt": b"evil"}
    archive = tmp_path/f"evil.{kind}"
    archive.write_bytes(_tar(members) if kind == "tar" else _zip(members))
    with pytest.raises(DogBreedError, match="unsafe member"):
        extract_archive(archive, tmp_path/"out")
    assert not (tmp_path/"escaped.txt").exists()


def test_downloaded_photos_are_what_was_served(server, tmp_path):
    out = download_stanford_dogs(tmp_path/"dogs", annotations=True, base_url=f"{server.url}/stanford", progress=False)
    served = tarfile.open(fileobj=io.BytesIO(stanford_archives()["/stanford/images.tar"]))
    first = served.getmembers()[0]
    assert (out/first.name).read_bytes() == served.extractfile(first).read()
    assert Image.open(out/first.name).size == (180, 140)
    assert (out/"Annotation"/"n02110958-pug"/"n02110958_0").is_file()
