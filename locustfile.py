"""Load test for the dog-breed API: users upload photos to /predict (and now and then check /health).

    dog-breed serve --port 8000 &
    locust -f locustfile.py --headless -u 16 -r 16 --run-time 60s --host http://127.0.0.1:8000

`benchmarks/load_test.py` starts a server, runs this headless with bounds, and checks the prediction log.
Photos: the JPEGs under $DOG_BREED_LOAD_PHOTOS (a folder), else 40 generated ones. $DOG_BREED_LOAD_REQUESTS
stops the run after that many /predict requests (0 = run until --run-time)."""
from __future__ import annotations

import io
import itertools
import os
import threading
from pathlib import Path

import numpy as np
from locust import HttpUser, constant, events, task
from locust.exception import StopUser


def _photos() -> list[bytes]:
    folder = os.environ.get("DOG_BREED_LOAD_PHOTOS")
    if folder:
        files = sorted(Path(folder).rglob("*.jpg"))[:200]
        if files: return [f.read_bytes() for f in files]
    from dog_breed_classifier.data import draw_sample_dog
    out = []
    for i, breed in enumerate(["pug", "beagle", "chow", "papillon", "basenji"] * 8):
        buf = io.BytesIO(); draw_sample_dog(breed, np.random.default_rng(i), (320, 256)).save(buf, "JPEG", quality=90)
        out.append(buf.getvalue())
    return out


PHOTOS = _photos()
LIMIT = int(os.environ.get("DOG_BREED_LOAD_REQUESTS", "0"))
_sent, _done, _lock = itertools.count(1), itertools.count(1), threading.Lock()
_env = {}


@events.init.add_listener
def _keep_environment(environment, **_): _env["env"] = environment


@events.request.add_listener
def _stop_after_limit(request_type, name, **_):
    "Quit once LIMIT /predict requests have *completed* (none is cut off in flight)."
    if LIMIT and name == "/predict" and next(_done) == LIMIT:
        import gevent
        gevent.spawn_later(0.2, _env["env"].runner.quit)


class PhotoUploader(HttpUser):
    wait_time = constant(0)

    @task(20)
    def predict(self):
        with _lock: n = next(_sent)
        if LIMIT and n > LIMIT: raise StopUser()
        self.client.post("/predict", files={"file": (f"photo{n}.jpg", PHOTOS[n % len(PHOTOS)], "image/jpeg")}, name="/predict")

    @task(1)
    def health(self):
        self.client.get("/health", name="/health")


@events.quitting.add_listener
def _report(environment, **_):
    s = environment.stats.get("/predict", "POST")
    print(f"/predict: {s.num_requests} requests, {s.num_failures} failures, p50 {s.get_response_time_percentile(0.5)} ms, "
          f"p99 {s.get_response_time_percentile(0.99)} ms, {s.total_rps:.1f} req/s")
