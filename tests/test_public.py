"""Running in public, against a real `dog-breed serve` on 127.0.0.1: the optional API key, one or named (none, wrong, right; the probes
open; the demo not a way around it; the key never logged), the rate limit (429 + Retry-After, not fooled by a client's
own X-Forwarded-For), and slow clients — 50 uploads that send their headers and part of the body and then stall, and
connections that stall inside their headers — all closed within the documented deadlines while others are served."""
from __future__ import annotations

import re
import socket
import time

import httpx
import pytest

from conftest import Server, jpeg_bytes, photo, run_cli
from dog_breed_classifier.api import AccessSettings, create_app, open_paths
from dog_breed_classifier.monitoring import PredictionStore
from dog_breed_classifier.served_model import ModelChoice

pytestmark = pytest.mark.slow   # real servers: not the fast tier

KEY = "k3y-" + "x" * 28


def upload() -> dict:
    return dict(files={"file": ("dog.jpg", jpeg_bytes(photo("beagle", 0, (280, 220))), "image/jpeg")})


@pytest.fixture(scope="module", params=["one key", "named keys"])
def keyed(request, tmp_path_factory, zero_shot_dir):
    "A server with one key (`--api-key-file`), or with named keys (`--api-keys-file`) of which KEY is one."
    d = tmp_path_factory.mktemp("keyed")
    if request.param == "one key":
        (d/"key").write_text(KEY + "\n"); (d/"key").chmod(0o644)   # a Kubernetes secret mounted 0644 works
        lock = ["--api-key-file", d/"key"]
    else:
        (d/"keys").write_text(f"# clients\nteam:{KEY}\nother:{'o' * 32}\n"); lock = ["--api-keys-file", d/"keys"]
    s = Server("--model-dir", zero_shot_dir, "--store-url", f"sqlite:///{d}/p.db", *lock, cwd=d)
    yield s
    s.stop()
    assert KEY not in s.log.read_text()


def test_without_the_key_the_api_answers_401(keyed):
    for call in [lambda h: httpx.post(keyed.url + "/predict", headers=h, timeout=60, **upload()),
                 lambda h: httpx.get(keyed.url + "/model", headers=h), lambda h: httpx.get(keyed.url + "/drift", headers=h),
                 lambda h: httpx.get(keyed.url + "/metrics", headers=h)]:
        for headers in [{}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {KEY}"}, {"Authorization": "Bearer"}]:
            r = call(headers)
            assert r.status_code == 401, (r.request.url, headers, r.status_code)
            assert r.json()["reason"] == "unauthorized" and r.headers["www-authenticate"] == "Bearer"
            assert KEY not in r.text


def test_with_the_key_it_answers_and_the_probes_stay_open(keyed):
    auth = {"Authorization": f"Bearer {KEY}"}
    assert httpx.post(keyed.url + "/predict", headers=auth, timeout=60, **upload()).status_code == 200
    assert httpx.get(keyed.url + "/model", headers=auth).json()["model_version"]
    assert "dogbreed_errors_total" in httpx.get(keyed.url + "/metrics", headers=auth).text
    assert httpx.get(keyed.url + "/live").status_code == 200
    assert httpx.get(keyed.url + "/health").status_code == 200


def app_routes(routes, prefix: str = ""):
    "`(method, path)` of every route, into included routers (FastAPI ≥ 0.160 keeps them as `_IncludedRouter`)."
    for route in routes:
        if hasattr(route, "original_router"):
            yield from app_routes(route.original_router.routes, prefix + route.include_context.prefix); continue
        for method in sorted(set(getattr(route, "methods", None) or {"GET"}) - {"HEAD", "OPTIONS"}):
            yield method, prefix + re.sub(r"\{[^}]+\}", "x", route.path)


def test_every_route_but_the_open_ones_needs_the_key(keyed, zero_shot_dir, tmp_path):
    "Walk the app's own routes on the real server: a route nobody listed as open answers 401 without the key."
    app = create_app(store=PredictionStore(f"sqlite:///{tmp_path}/walk.db"), choice=ModelChoice(zero_shot_dir, ""),
                     access=AccessSettings(api_key=KEY), ui=False)
    open_set, walked = open_paths(app, AccessSettings(api_key=KEY)), []
    for method, path in app_routes(app.routes):
        walked.append((method, path, httpx.request(method, keyed.url + path, timeout=60).status_code))
    closed = [w for w in walked if (w[1].rstrip("/") or "/") not in open_set]
    assert {"/predict", "/predict/batch", "/model", "/drift", "/metrics"} <= {p for _, p, _ in closed}
    assert [w for w in closed if w[2] != 401] == [], "routes open without the key"
    assert [w for w in walked if w not in closed and w[2] == 401] == [], "open routes refused"
    assert {p for _, p, _ in walked} - {p for _, p, _ in closed} >= {"/live", "/health", "/openapi.json", "/docs"}


def test_with_a_key_the_demo_is_no_way_around_it(keyed):
    assert httpx.get(keyed.url + "/ui/").status_code == 401      # not mounted, and closed like any unknown path
    assert "the demo at /ui is off" in keyed.log.read_text()


def test_public_metrics_the_demo_on_request_and_cors_preflights(tmp_path, zero_shot_dir):
    s = Server("--model-dir", zero_shot_dir, "--store-url", f"sqlite:///{tmp_path}/p.db", "--public-metrics", "--ui-with-key",
               "--cors-origin", "https://app.example", cwd=tmp_path, env={"DOG_BREED_API_KEY": KEY})
    try:
        preflight = httpx.options(s.url + "/predict", headers={"Origin": "https://app.example", "Access-Control-Request-Method": "POST",
                                                               "Access-Control-Request-Headers": "authorization"})
        assert preflight.status_code == 200 and preflight.headers["access-control-allow-origin"] == "https://app.example"
        assert httpx.get(s.url + "/metrics").status_code == 200
        assert httpx.get(s.url + "/model").status_code == 401
        assert httpx.get(s.url + "/ui/").status_code == 200
    finally: s.stop()
    assert KEY not in s.log.read_text()


@pytest.mark.parametrize("args, says", [(["--api-key-file", "missing.key"], "cannot be read"),
                                        (["--api-key-file", "empty.key"], "is empty"),
                                        (["--rate-limit", "lots"], "e.g. 60/minute")])
def test_bad_lock_settings_stop_the_start_with_one_line(tmp_path, zero_shot_dir, args, says):
    (tmp_path/"empty.key").write_text("\n")
    res = run_cli("serve", "--model-dir", zero_shot_dir, *args, cwd=tmp_path, timeout=120)
    assert res.returncode == 2 and says in res.stderr and len(res.stderr.strip().splitlines()) == 1, res.stderr


def test_rate_limit_answers_429_with_retry_after(tmp_path, zero_shot_dir):
    s = Server("--model-dir", zero_shot_dir, "--store-url", f"sqlite:///{tmp_path}/p.db", "--rate-limit", "5/minute", "--no-ui",
               cwd=tmp_path)
    try:
        codes = [httpx.get(s.url + "/model", headers={"X-Forwarded-For": f"10.0.0.{i}"}) for i in range(7)]
        assert [r.status_code for r in codes] == [200] * 5 + [429] * 2   # a client's own header changes nothing
        r = codes[-1]
        assert r.json()["reason"] == "rate_limited" and 1 <= int(r.headers["retry-after"]) <= 12
        assert [httpx.get(s.url + p).status_code for p in ("/live", "/health", "/live")] == [200, 200, 200]
        assert 'dogbreed_errors_total{kind="rate_limited"} 2.0' in httpx.get(s.url + "/metrics").text
    finally: s.stop()
    assert s.log.read_text().count("rate") < 5   # no log line per refusal


def stalled(url: str, partial: bytes) -> socket.socket:
    "A connection that sends `partial` (headers, maybe part of a body) and then nothing."
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=5)
    sock.sendall(partial)
    return sock


def closed_by_server(sock: socket.socket, within: float) -> float | None:
    "Seconds until the server closed `sock` (None if it was still open after `within`)."
    sock.settimeout(0.2)
    t = time.monotonic()
    while time.monotonic() - t < within:
        try:
            if sock.recv(4096) == b"": return time.monotonic() - t
        except TimeoutError: continue
        except OSError: return time.monotonic() - t
    return None


def test_stalled_uploads_and_headers_are_cut_off_and_others_served(tmp_path, zero_shot_dir):
    header_s, body_s = 2.0, 3.0
    s = Server("--model-dir", zero_shot_dir, "--store-url", f"sqlite:///{tmp_path}/p.db", "--no-ui",
               "--header-timeout", header_s, "--body-timeout", body_s, cwd=tmp_path)
    try:
        t = time.perf_counter(); assert httpx.post(s.url + "/predict", timeout=30, **upload()).status_code == 200
        baseline_s = time.perf_counter() - t
        body_head = (b"--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.jpg\"\r\n"
                     b"Content-Type: image/jpeg\r\n\r\n" + b"\xff\xd8" + b"\0" * 1000)
        uploads = [stalled(s.url, b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n"
                                  b"Content-Length: 200000\r\n\r\n" + body_head) for _ in range(50)]
        headers = [stalled(s.url, b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Le") for _ in range(10)]
        t = time.perf_counter()
        r = httpx.post(s.url + "/predict", timeout=30, **upload())            # served while 60 connections stall
        served_s = time.perf_counter() - t
        assert r.status_code == 200 and served_s < max(2.0, 5 * baseline_s), (served_s, baseline_s)
        cut = [closed_by_server(c, header_s + body_s + 3) for c in uploads + headers]
        assert all(c is not None for c in cut), f"{sum(c is None for c in cut)} stalled connections still open"
        assert httpx.get(s.url + "/health").status_code == 200
    finally:
        s.stop()
        for c in uploads + headers: c.close()
    assert "Traceback" not in s.log.read_text()
    print(f"60 stalled connections closed within {max(cut):.1f} s of their last byte (deadlines {header_s}/{body_s} s); "
          f"another client served in {served_s:.2f} s meanwhile")
