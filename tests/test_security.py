"""Secret hygiene and the server's defences: no credential in any tracked file (and the scanner shown to catch a
planted one), nothing unpickled on the serving path, upload names never reaching the filesystem, CORS off unless
configured, and credentials only from the environment."""
from __future__ import annotations

import ast
import re
import subprocess
from pathlib import Path

import httpx
import pytest

from conftest import REPO, Server, jpeg_bytes, photo

# What a leaked credential looks like. Built from pieces so this file does not match itself.
CREDENTIAL_PATTERNS = {
    "AWS access key id": r"\b(AKIA|ASIA)[0-9A-Z]{16}\b",
    "AWS secret access key": r"aws_secret_access_key\s*[:=]\s*['\"]?[A-Za-z0-9/+=]{40}",
    "private key": "-----BEGIN ([A-Z]+ )?PRIVATE" + " KEY-----",
    "Google service-account key": r"\"private_key_id\"\s*:\s*\"[0-9a-f]{40}\"",
    "W&B API key": r"(WANDB_API_KEY|wandb_api_key|api_key)\s*[:=]\s*['\"]?(local-)?[0-9a-f]{40}\b",
    "GitHub token": r"\bgh[pousr]_[A-Za-z0-9]{36,}\b",
    "Hugging Face token": r"\bhf_[A-Za-z0-9]{34,}\b",
    "Kaggle key": r"\"key\"\s*:\s*\"[0-9a-f]{32}\"",
    "Slack token": r"\bxox[abposr]-[A-Za-z0-9-]{10,}",
    "credentials in a URL": r"\b(postgres(ql)?|mysql|https?|s3|gs)(\+\w+)?://[^/\s:@'\"]+:[^/\s@'\"]{6,}@",
}


def leaked_credentials(text: str) -> list[str]:
    "The kinds of credential that `text` appears to contain."
    return [kind for kind, pattern in CREDENTIAL_PATTERNS.items() if re.search(pattern, text)]


def tracked_text_files() -> list[Path]:
    names = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    files = [REPO/n for n in names.split("\0") if n]
    return [f for f in files if f.is_file() and f.stat().st_size < 5_000_000 and b"\0" not in f.read_bytes()[:4096]]


def test_no_credential_in_any_tracked_file():
    files = tracked_text_files()
    assert len(files) > 50
    found = {str(f.relative_to(REPO)): kinds for f in files if (kinds := leaked_credentials(f.read_text(errors="replace")))}
    assert not found, f"credentials in tracked files (move them to the environment): {found}"


@pytest.mark.parametrize("planted, kind", [
    ("AKIA" + "Q" * 16, "AWS access key id"),
    ("-----BEGIN RSA PRIVATE" + " KEY-----\nMIIE...", "private key"),
    ("WANDB_API_KEY=" + "ab12" * 10, "W&B API key"),
    ("token: ghp_" + "a1B2" * 9, "GitHub token"),
    ('{"username": "me", "key": "' + "0f" * 16 + '"}', "Kaggle key"),
    ("DOG_BREED_STORE_URL=postgresql+psycopg://dogs:" + "s3cretpw" + "@db.internal/dogs", "credentials in a URL"),
])
def test_the_scanner_catches_a_planted_credential(planted, kind):
    assert kind in leaked_credentials(f"some config\n{planted}\nmore\n")


def test_placeholders_and_env_references_are_not_credentials():
    for ok in ["WANDB_API_KEY: ${{ secrets.WANDB_API_KEY }}", "export WANDB_API_KEY=...", "postgresql+psycopg://user@host/db",
               "s3://my-bucket/dog-breed-classifier"]:
        assert not leaked_credentials(ok), ok


SERVING_MODULES = ["api", "app", "inference", "images", "monitoring", "drift", "core", "saliency", "cli", "delivery", "space"]


def test_serving_path_unpickles_nothing():
    "Serving loads ONNX, JSON, CSV and .npy (without pickles); torch.load appears only in training code, weights_only."
    for name in SERVING_MODULES:
        tree = ast.parse((REPO/"dog_breed_classifier"/f"{name}.py").read_text())
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                mods = [a.name for a in node.names] + ([node.module] if isinstance(node, ast.ImportFrom) and node.module else [])
                assert not {"pickle", "joblib", "dill", "cloudpickle"} & {m.split(".")[0] for m in mods}, (name, mods)
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                call = ast.unparse(node.func)
                assert call not in ("torch.load", "pd.read_pickle"), (name, call)
                if call == "np.load":
                    kw = {k.arg: ast.unparse(k.value) for k in node.keywords}
                    assert kw.get("allow_pickle", "False") == "False", (name, ast.unparse(node))
    for name in ["model", "train"]:   # the training side loads state dicts only
        for m in re.finditer(r"torch\.load\(([^\n]*)\)", (REPO/"dog_breed_classifier"/f"{name}.py").read_text()):
            assert "weights_only=True" in m.group(1), (name, m.group(0))


@pytest.fixture(scope="module")
def hardened(tmp_path_factory, zero_shot_dir):
    d = tmp_path_factory.mktemp("secure")
    s = Server("--model-dir", zero_shot_dir, "--store-url", f"sqlite:///{d}/predictions.db", "--archive", d/"uploads",
               "--no-ui", cwd=d)
    s.dir = d
    yield s
    s.stop()


@pytest.mark.slow
def test_upload_names_never_touch_the_filesystem(hardened):
    body = jpeg_bytes(photo("pug", 5, (240, 200)))
    names = ["../../../../tmp/owned.jpg", "..\\..\\evil.jpg", "/etc/passwd", "chien_été_🐶.jpg", "a" * 300 + ".jpg",
             "x.jpg\0.sh", "CON", ""]
    before = set(Path(hardened.dir).rglob("*"))
    for name in names:
        r = httpx.post(hardened.url + "/predict", files={"file": (name, body, "image/jpeg")}, timeout=30)
        assert r.status_code in (200, 422), (name, r.status_code, r.text)
        if r.status_code == 422: assert r.json()["reason"] == "bad_request", r.text
    created = [p for p in set(Path(hardened.dir).rglob("*")) - before if p.is_file()]
    archived = [p for p in created if "uploads" in p.parts]
    assert archived and all(re.fullmatch(r"[0-9a-f]+\.jpg", p.name) for p in archived), archived   # named by id only
    assert not [p for p in created if p not in archived and not p.name.startswith("predictions.db")], created
    assert not Path("/tmp/owned.jpg").exists()


@pytest.mark.slow
def test_cors_is_off_unless_configured(hardened, zero_shot_dir, tmp_path):
    preflight = {"Origin": "https://elsewhere.example", "Access-Control-Request-Method": "POST"}
    r = httpx.options(hardened.url + "/predict", headers=preflight)
    assert "access-control-allow-origin" not in {k.lower() for k in r.headers}
    r = httpx.get(hardened.url + "/health", headers={"Origin": "https://elsewhere.example"})
    assert "access-control-allow-origin" not in {k.lower() for k in r.headers}
    s = Server("--model-dir", zero_shot_dir, "--store-url", f"sqlite:///{tmp_path}/p.db", "--no-ui",
               "--cors-origin", "https://app.example", cwd=tmp_path)
    try:
        ok = httpx.options(s.url + "/predict", headers={**preflight, "Origin": "https://app.example"})
        assert ok.headers.get("access-control-allow-origin") == "https://app.example"
        other = httpx.options(s.url + "/predict", headers=preflight)
        assert other.headers.get("access-control-allow-origin") is None
    finally:
        s.stop()


def test_credentials_are_documented_as_environment_only():
    "The README names every credential the project reads and says it comes from the environment."
    readme = (REPO/"README.md").read_text()
    section = readme[readme.index("### Credentials"):]
    section = section.split("\n#", 1)[0]   # up to the next heading, or the end of the page
    for var in ["WANDB_API_KEY", "KAGGLE_USERNAME", "KAGGLE_KEY", "AWS_ACCESS_KEY_ID", "GOOGLE_APPLICATION_CREDENTIALS",
                "DOG_BREED_STORE_URL"]:
        assert var in section, var
    assert "environment" in section
