# The serving image: the API, ONE runtime, the PostgreSQL driver and a model, installed from a hashed lock
# (requirements/serve-<runtime>.lock, --require-hashes) — no torch, no Evidently, no build tools, non-root.
# Drift detection runs beside it, from the `drift` target of this file (Evidently), and records its verdicts in the
# prediction log the servers read: GET /drift and the drift gauges serve them.
#
#   docker build -t dog-breed-serve .                                          # OpenVINO, the zero-shot model baked in
#   docker build -t dog-breed-serve --build-arg RUNTIME=onnxruntime .          # ONNX Runtime instead
#   docker build -t dog-breed-serve --build-arg SERVING_DIR=models/serving .   # your exported model
#   docker build -t dog-breed-drift --target drift .                           # the drift job
#   docker run -d -p 8000:8000 -v dog-breed-data:/data dog-breed-serve
#   docker run -d -v dog-breed-data:/data dog-breed-drift                      # a check every 5 minutes, same log
#
# Runtime settings (env): PORT (default 8000; Cloud Run sets it), DOG_BREED_STORE_URL (default: SQLite in /data),
# DOG_BREED_THREADS (inference threads). The model is read from /opt/model: mount another exported model there to
# serve it without a rebuild. Health: GET /health (503 until the model is loaded and the store writable).
# The base is pinned by digest (Dependabot proposes new ones: .github/dependabot.yml); the offline builds of
# tests/test_containers.py pass a Debian base of their own (BASE_IMAGE).
ARG BASE_IMAGE=python:3.11-slim-bookworm@sha256:a36c24f9cbdf4fd0f52d67f0823eeac19c2028c637cecc392d97f980d4fec56b

# --- build: the locked environment, the project's wheel, the model (torch only to build the zero-shot model) ---
FROM ${BASE_IMAGE} AS build
ARG RUNTIME=openvino
ARG SERVING_DIR=""
# pip's settings, for a mirror (--build-arg PIP_INDEX_URL=…) or an air-gapped build from a wheelhouse mounted into the
# RUN steps (buildah/podman: --volume "$PWD/wheels:/wheels:ro" --build-arg PIP_NO_INDEX=1 --build-arg PIP_FIND_LINKS=/wheels)
ARG PIP_INDEX_URL
ARG PIP_NO_INDEX
ARG PIP_FIND_LINKS
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY requirements ./requirements
RUN test -f "requirements/serve-${RUNTIME}.lock" || { echo "RUNTIME must be openvino or onnxruntime"; exit 1; }; \
    python3 -m venv /opt/venv && \
    /opt/venv/bin/pip install --require-hashes --no-deps -r "requirements/serve-${RUNTIME}.lock" && \
    python3 -m venv /opt/tools && /opt/tools/bin/pip install --require-hashes --no-deps -r requirements/build.lock
COPY pyproject.toml README.md ./
COPY dog_breed_classifier ./dog_breed_classifier
RUN /opt/tools/bin/pip wheel --no-deps --no-build-isolation --wheel-dir /opt/dist . && \
    /opt/venv/bin/pip install --no-deps /opt/dist/*.whl && /opt/venv/bin/pip check
COPY . ./
RUN if [ -n "$SERVING_DIR" ]; then \
        test -f "$SERVING_DIR/model_card.json" || { echo "no model_card.json in $SERVING_DIR: run dvc repro first"; exit 1; }; \
        cp -r "$SERVING_DIR" /opt/model; \
    else \
        python3 -m venv /opt/build && \
        /opt/build/bin/pip install -c requirements/constraints.txt --index-url "$TORCH_INDEX_URL" torch torchvision && \
        /opt/build/bin/pip install -c requirements/constraints.txt ".[train]" && \
        /opt/build/bin/python -c "from dog_breed_classifier.export import build_zero_shot_serving_dir; build_zero_shot_serving_dir('/opt/model')"; \
    fi && \
    rm -f /opt/model/model.safetensors && \
    chmod -R a+rX /opt/model   # torch weights gone (no torch here: the demo's heatmaps use occlusion on ONNX); readable by the app user

# --- the serving environment, trimmed: what a CPU server loading ONNX never opens ---
FROM build AS serving-env
# OpenVINO's GPU and NPU plugins, its GPU kernel cache, its TensorFlow/PaddlePaddle/PyTorch/JAX/GGUF frontends and C++
# headers (~81 MB; the ONNX and IR frontends and the CPU plugin stay); Gradio's browser-side ffmpeg (video editing, 31 MB), its
# server-side-rendering Node build (13 MB: no Node.js here), its demo media and Bokeh bundle (9 MB), its Hugging Face
# Hub upload client (hf_xet, 11 MB); pip and setuptools (nothing is installed at run time); type stubs and test suites.
# Then the bytecode of the modules a server never imports (deploy/prune_bytecode.py, which answers a photo with the
# trimmed runtime first: a trim that broke serving fails the build here).
COPY deploy/prune_bytecode.py /src/deploy/
RUN site=/opt/venv/lib/python3.11/site-packages && \
    rm -rf "$site"/openvino/libs/libopenvino_intel_gpu_plugin.so "$site"/openvino/libs/libopenvino_intel_npu_plugin.so \
           "$site"/openvino/libs/cache.json "$site"/openvino/libs/libopenvino_tensorflow_frontend.so.* \
           "$site"/openvino/libs/libopenvino_tensorflow_lite_frontend.so.* "$site"/openvino/libs/libopenvino_paddle_frontend.so.* \
           "$site"/openvino/libs/libopenvino_pytorch_frontend.so.* "$site"/openvino/libs/libopenvino_jax_frontend.so.* \
           "$site"/openvino/libs/libopenvino_gguf_frontend.so.* "$site"/openvino/include \
           "$site"/openvino/frontend/jax "$site"/openvino/frontend/paddle "$site"/openvino/frontend/pytorch \
           "$site"/openvino/frontend/tensorflow \
           "$site"/gradio/templates/frontend/static/ffmpeg "$site"/gradio/templates/frontend/static/bokeh \
           "$site"/gradio/templates/node "$site"/gradio/media_assets "$site"/gradio/CHANGELOG.md "$site"/hf_xet \
           "$site"/pip "$site"/pip-* "$site"/setuptools "$site"/setuptools-* "$site"/pkg_resources \
           "$site"/_distutils_hack "$site"/distutils-precedence.pth && \
    for package in numpy pandas; do find "$site/$package" -depth -type d -name tests -exec rm -rf {} +; done && \
    find "$site" -name "*.pyi" -delete && \
    /opt/venv/bin/python /src/deploy/prune_bytecode.py /opt/model "$site"

# --- the drift job: the serving packages, Evidently and its scientific stack (drift.lock) ---
FROM build AS drift-env
ARG PIP_INDEX_URL
ARG PIP_NO_INDEX
ARG PIP_FIND_LINKS
RUN /opt/venv/bin/pip install --require-hashes --no-deps -r requirements/drift.lock && /opt/venv/bin/pip check

FROM ${BASE_IMAGE} AS drift
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 DO_NOT_TRACK=1 \
    DOG_BREED_STORE_URL=sqlite:////data/predictions.db
RUN useradd --create-home --uid 10001 app && mkdir /data && chown app /data
COPY --from=drift-env /opt/venv /opt/venv
COPY --from=build /opt/model /opt/model
USER 10001
WORKDIR /home/app
VOLUME ["/data"]
# every 5 minutes; the served model's own reference (the zero-shot model has none: /drift then says so and how to
# give one, e.g. --reference /path/to/typical/photos mounted into the container)
CMD ["dog-breed", "drift", "--every", "300", "--model-dir", "/opt/model", "--out", "/tmp/drift.html", "--quiet"]

# --- the serving image (the default target) ---
FROM ${BASE_IMAGE}
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 PORT=8000 \
    DOG_BREED_STORE_URL=sqlite:////data/predictions.db
RUN useradd --create-home --uid 10001 app && mkdir /data && chown app /data
COPY --from=serving-env /opt/venv /opt/venv
COPY --from=build /opt/model /opt/model
USER 10001
WORKDIR /home/app
VOLUME ["/data"]
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(f\"http://127.0.0.1:{os.environ.get('PORT', '8000')}/live\", timeout=4)"]
CMD ["sh", "-c", "exec dog-breed serve --host 0.0.0.0 --port \"${PORT}\" --model-dir /opt/model --no-access-log"]
