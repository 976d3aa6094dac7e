"""Shared fixtures: a throwaway project folder, the `dog-breed` command, photo makers, a real server process, and a
real PostgreSQL server."""
from __future__ import annotations

import importlib.util
import io
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dog_breed_classifier.core import stanford_photos
from dog_breed_classifier.data import draw_sample_dog
from dog_breed_classifier.measure import LocalServer, dog_breed_command, free_port  # noqa: F401  (the tests import them from here)

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO/"deploy"))   # deploy/offline_images.py: a script, imported by the tests as a module
# real Stanford photos when this machine has them ($DOG_BREED_PHOTOS or ../shared/data); tests using them skip otherwise
DEV_PHOTOS = stanford_photos("stanford_dogs_dev", REPO) or REPO.parent/"shared"/"data"/"stanford_dogs_dev"


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
    from dog_breed_classifier.export import build_zero_shot_serving_dir
    cache = tmp_path_factory.mktemp("cache")
    build_zero_shot_serving_dir(cache/"zero_shot")
    return cache


@pytest.fixture(scope="session")
def zero_shot_dir(cache_dir) -> Path:
    "The 120-breed zero-shot serving folder (no drift reference: it was trained on no data of ours)."
    return cache_dir/"zero_shot"


def installed_tool(name: str) -> str | None:
    "A command-line tool installed beside this Python (the `lint` extra's linters), else on PATH."
    local = Path(sys.executable).parent/name
    return str(local) if local.exists() else shutil.which(name)


Server = LocalServer   # `dog-breed serve` on a free loopback port (dog_breed_classifier.measure)


def postgres_bin() -> Path | None:
    "The folder of PostgreSQL's server programs (Debian keeps them out of PATH, under /usr/lib/postgresql/N/bin)."
    for d in sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
                    reverse=True):
        if (d/"initdb").exists(): return d
    found = shutil.which("initdb")
    return Path(found).parent if found else None


class PostgresCluster:
    """A throwaway PostgreSQL cluster on 127.0.0.1 (trust auth, loopback only), run with the Debian package's programs
    as the `postgres` user when the tests run as root; `stop()` and `start()` it to test outages. Skips without them."""
    def __init__(self):
        self.bin_dir = postgres_bin()
        if self.bin_dir is None: pytest.skip("PostgreSQL is not installed (apt-get install postgresql; .ci/run installs it)")
        if importlib.util.find_spec("psycopg") is None: pytest.skip("psycopg is not installed (pip install -e '.[postgres]')")
        self.as_user = []
        if os.geteuid() == 0:   # initdb refuses to run as root
            try: pwd.getpwnam("postgres")
            except KeyError: pytest.skip("running as root and there is no postgres user to run PostgreSQL as")
            self.as_user = ["runuser", "-u", "postgres", "--"]
        self.home = Path(tempfile.mkdtemp(prefix="dog-breed-pg-"))
        if self.as_user: shutil.chown(self.home, "postgres", "postgres")
        self.port = free_port()
        self.url = f"postgresql+psycopg://dogbreed@127.0.0.1:{self.port}"
        self.pg(self.bin_dir/"initdb", "-D", self.home/"data", "-U", "dogbreed", "--auth=trust", "-E", "UTF8")
        self.start()

    def pg(self, *args):
        res = subprocess.run([*self.as_user, *map(str, args)], capture_output=True, text=True, timeout=120)
        if res.returncode: raise RuntimeError(f"{args[0]} failed: {res.stdout}{res.stderr}")

    def start(self):
        self.pg(self.bin_dir/"pg_ctl", "-D", self.home/"data", "-l", self.home/"server.log", "-w", "-t", "60",
                "-o", f"-h 127.0.0.1 -p {self.port} -k {self.home} -c max_connections=200", "start")

    def stop(self, mode: str = "fast"):
        self.pg(self.bin_dir/"pg_ctl", "-D", self.home/"data", "-m", mode, "-w", "stop")

    def remove(self):
        try: self.stop()
        finally: shutil.rmtree(self.home, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_server():
    "A real PostgreSQL on 127.0.0.1 for the whole test session (its URL); see `PostgresCluster`."
    cluster = PostgresCluster()
    try: yield cluster.url
    finally: cluster.remove()


def new_postgres_database(server_url: str) -> str:
    "A fresh, empty database on `server_url`; its URL."
    import sqlalchemy as sa
    name = f"t_{uuid.uuid4().hex[:12]}"
    engine = sa.create_engine(f"{server_url}/postgres", isolation_level="AUTOCOMMIT")
    with engine.connect() as conn: conn.exec_driver_sql(f"CREATE DATABASE {name}")
    engine.dispose()
    return f"{server_url}/{name}"
