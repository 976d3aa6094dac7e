"""Shared fixtures: a throwaway project folder, the `dog-breed` command, photo makers, and a real server process."""
from __future__ import annotations

import io
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from dog_breed_classifier.data import draw_sample_dog

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent/"shared"/"data"


def dog_breed_command() -> list[str]:
    "The installed `dog-breed` console script (next to this Python), as an argv prefix."
    script = Path(sys.executable).parent/"dog-breed"
    return [str(script)] if script.exists() else [shutil.which("dog-breed") or "dog-breed"]


def run_cli(*args, cwd, timeout=300, **kw) -> subprocess.CompletedProcess:
    "Run `dog-breed ARGS` in `cwd`, capturing output."
    env = {**os.environ, "DO_NOT_TRACK": "1", **kw.pop("env", {})}
    env.pop("DOG_BREED_ROOT", None)
    return subprocess.run([*dog_breed_command(), *map(str, args)], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=env, **kw)


@pytest.fixture
def project(tmp_path) -> Path:
    "An empty project: a folder with a params.yaml holding the defaults."
    (tmp_path/"params.yaml").write_text("data:\n  workers: 2\n")
    return tmp_path


def photo(breed: str = "pug", seed: int = 0, size=(160, 128)) -> Image.Image:
    "A synthetic RGB photo of `breed`."
    return draw_sample_dog(breed, np.random.default_rng(seed), size)


def jpeg_bytes(img: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", **kw)
    return buf.getvalue()


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    "A DOG_BREED_CACHE holding the zero-shot serving model, built once for the session."
    from dog_breed_classifier.export import zero_shot_serving_dir
    cache = tmp_path_factory.mktemp("cache")
    zero_shot_serving_dir(cache/"zero_shot")
    return cache


@pytest.fixture(scope="session")
def zero_shot_dir(cache_dir) -> Path:
    "The 120-breed zero-shot serving folder (no drift reference: it was trained on no data of ours)."
    return cache_dir/"zero_shot"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    "`dog-breed serve` in a subprocess on a free loopback port."
    def __init__(self, *args, cwd: Path, env: dict | None = None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = cwd/f"server-{self.port}.log"
        full_env = {**os.environ, "DO_NOT_TRACK": "1", **(env or {})}
        full_env.pop("DOG_BREED_STORE_URL", None)
        with open(self.log, "w") as log:
            self.proc = subprocess.Popen([*dog_breed_command(), "serve", "--port", str(self.port), "--no-access-log", *map(str, args)],
                                         cwd=cwd, env=full_env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.time() + 90
        while time.time() < deadline:
            if self.proc.poll() is not None: raise AssertionError(f"server exited {self.proc.returncode}:\n{self.log.read_text()[-3000:]}")
            try:
                httpx.get(self.url + "/health", timeout=2); return
            except httpx.TransportError: time.sleep(0.3)
        self.stop(); raise AssertionError(f"server did not start:\n{self.log.read_text()[-3000:]}")

    def stop(self):
        self.proc.terminate()
        try: self.proc.wait(20)
        except subprocess.TimeoutExpired: self.proc.kill(); self.proc.wait()
