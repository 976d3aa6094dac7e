# The serving image: ONNX (+ OpenVINO) runtime, the library, a model, the PostgreSQL driver — no torch, no build tools,
# non-root.
#
#   docker build -t dog-breed-serve .                                          # bakes in the 120-breed zero-shot model
#   docker build -t dog-breed-serve --build-arg SERVING_DIR=models/serving .   # bakes in your exported model
#   docker run -p 8000:8000 -v dog-breed-data:/data dog-breed-serve
#
# Runtime settings (env): PORT (default 8000; Cloud Run sets it), DOG_BREED_STORE_URL (default: SQLite in /data),
# DOG_BREED_THREADS (inference threads). The model is read from /opt/model: mount another exported model there to
# serve it without a rebuild. Health: GET /health (503 until the model is loaded and the store writable).
# The Gradio demo is at /ui (/ redirects there).
ARG BASE_IMAGE=python:3.11-slim

# --- build: wheels for the runtime, and the model (torch is needed only to build the zero-shot model) ---
FROM ${BASE_IMAGE} AS build
ARG SERVING_DIR=""
# pip's settings, for a mirror (--build-arg PIP_INDEX_URL=…) or an air-gapped build from a wheelhouse mounted into the
# RUN steps (buildah/podman: --volume "$PWD/wheels:/wheels:ro" --build-arg PIP_NO_INDEX=1 --build-arg PIP_FIND_LINKS=/wheels)
ARG PIP_INDEX_URL
ARG PIP_NO_INDEX
ARG PIP_FIND_LINKS
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY dog_breed_classifier ./dog_breed_classifier
# the test suites of the big scientific packages are not needed to serve (only theirs: some packages, Evidently
# among them, keep runtime code in a `tests` package)
RUN python3 -m venv /opt/venv && /opt/venv/bin/pip install --upgrade pip && \
    /opt/venv/bin/pip install ".[serve,openvino,postgres]" && \
    for package in numpy pandas pyarrow scipy sklearn statsmodels; do \
        find "/opt/venv/lib/python3.11/site-packages/$package" -depth -type d -name tests -exec rm -rf {} +; \
    done
COPY . ./
RUN if [ -n "$SERVING_DIR" ]; then \
        test -f "$SERVING_DIR/model_card.json" || { echo "no model_card.json in $SERVING_DIR: run dvc repro first"; exit 1; }; \
        cp -r "$SERVING_DIR" /opt/model; \
    else \
        python3 -m venv /opt/build && \
        /opt/build/bin/pip install --upgrade pip && \
        /opt/build/bin/pip install --index-url https://download.pytorch.org/whl/cpu torch torchvision && \
        /opt/build/bin/pip install ".[train]" && \
        /opt/build/bin/python -c "from dog_breed_classifier.export import zero_shot_serving_dir; zero_shot_serving_dir('/opt/model')"; \
    fi && \
    rm -f /opt/model/model.safetensors && \
    chmod -R a+rX /opt/model   # torch weights gone (no torch here: the demo's heatmaps use occlusion on ONNX); readable by the app user

# --- runtime ---
FROM ${BASE_IMAGE}
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 PORT=8000 \
    DOG_BREED_STORE_URL=sqlite:////data/predictions.db
RUN useradd --create-home --uid 10001 app && mkdir /data && chown app /data
COPY --from=build /opt/venv /opt/venv
COPY --from=build /opt/model /opt/model
USER 10001
WORKDIR /home/app
VOLUME ["/data"]
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(f\"http://127.0.0.1:{os.environ.get('PORT', '8000')}/live\", timeout=4)"]
CMD ["sh", "-c", "exec dog-breed serve --host 0.0.0.0 --port \"${PORT}\" --model-dir /opt/model --no-access-log"]
