"""Shared fixtures: a throwaway project folder, the `dog-breed` command, and photo makers."""
from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
from pathlib import Path

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
