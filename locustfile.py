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
    "The photos to upload: $DOG_BREED_LOAD_PHOTOS's JPEGs, else 40 generated images (plain PIL, nothing heavier)."
    folder = os.environ.get("DOG_BREED_LOAD_PHOTOS")
    if folder:
        files = sorted(Path(folder).rglob("*.jpg"))[:200]
        if files: return [f.read_bytes() for f in files]
    from PIL import Image
    out = []
    for i in range(40):
        rng = np.random.default_rng(i)
        arr = (rng.random((256, 320, 3)) * 60 + rng.integers(0, 190, 3)).astype(np.uint8)
        buf = io.BytesIO(); Image.fromarray(arr).save(buf, "JPEG", quality=90)
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
    "Print the /predict summary; write it as JSON to $DOG_BREED_LOAD_SUMMARY when set."
    s = environment.stats.get("/predict", "POST")
    summary = dict(requests=s.num_requests, failures=s.num_failures, req_per_s=round(s.total_rps, 1),
                   **{f"p{q}_ms": s.get_response_time_percentile(q / 100) for q in (50, 95, 99)})
    print(f"/predict: {summary}")
    if os.environ.get("DOG_BREED_LOAD_SUMMARY"):
        import json
        Path(os.environ["DOG_BREED_LOAD_SUMMARY"]).write_text(json.dumps(summary))
