# syntax=docker/dockerfile:1
# The lutnet serving image: onnxruntime behind FastAPI, speaking the Open Inference Protocol (v2).
#
#   docker build -t lutnet .                            serves a repository mounted at /models (the last stage, `serve`)
#   docker build --target demo -t lutnet-demo .         also bakes the exported digits model (./models)
#
# Where pip sits behind a TLS-intercepting proxy, hand its CA bundle in as a build secret (never a layer):
#   docker build --secret id=pip_cert,src="$PIP_CERT" -t lutnet .
# BASE_IMAGE lets a machine with no registry build from a local stand-in (deploy/podman/base-image.sh).
ARG BASE_IMAGE=python:3.11-slim-bookworm

# Build stage: the lutnet wheel and every wheel its `serve` extra needs. Only this stage reaches the network.
FROM ${BASE_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
WORKDIR /src
RUN python3 -m venv /opt/build
COPY pyproject.toml README.md ./
COPY lutnet/ lutnet/
COPY training/ training/
COPY export/ export/
COPY service/ service/
RUN --mount=type=secret,id=pip_cert \
    if [ -s /run/secrets/pip_cert ]; then export PIP_CERT=/run/secrets/pip_cert; fi \
    && /opt/build/bin/pip wheel --no-cache-dir --wheel-dir /wheels ".[serve]"

# Runtime stage: a virtual environment with lutnet[serve] only (no torch, no onnx, no compilers),
# installed offline from the build stage's wheels, which stay out of the image.
FROM ${BASE_IMAGE} AS runtime
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    python3 -m venv /opt/lutnet \
    && /opt/lutnet/bin/pip install --no-cache-dir --no-index --find-links /wheels "lutnet[serve]" \
    && /opt/lutnet/bin/pip uninstall --yes pip setuptools \
    && groupadd --gid 10001 lutnet \
    && useradd --no-log-init --no-create-home --uid 10001 --gid lutnet --home-dir /nonexistent --shell /usr/sbin/nologin lutnet \
    && mkdir /models
# One process with one onnxruntime thread per session suits one CPU; raise LUTNET_WORKERS with the CPU limit.
# ORT_DISABLE_TELEMETRY=1 turns off onnxruntime's OneDS usage telemetry (lutnet serve also sets it unless set; see lutnet/ortenv.py).
ENV PATH=/opt/lutnet/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    LUTNET_REPOSITORY=/models \
    LUTNET_HOST=0.0.0.0 \
    LUTNET_PORT=8000 \
    LUTNET_WORKERS=1 \
    LUTNET_INTRA_OP_THREADS=1 \
    OMP_NUM_THREADS=1 \
    ORT_DISABLE_TELEMETRY=1
VOLUME ["/models"]
USER 10001:10001
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python3", "-c", "import os, urllib.request; urllib.request.urlopen(f'http://127.0.0.1:{os.environ.get(\"LUTNET_PORT\", \"8000\")}/v2/health/ready', timeout=2)"]
# Exec form: lutnet is PID 1 and receives SIGTERM itself, then drains in-flight requests and exits 0.
ENTRYPOINT ["lutnet", "serve"]

# Demo target: the runtime image with an exported model repository baked in, so it answers with nothing mounted.
# DEMO_REPOSITORY is a repository directory inside the build context (`make demo` writes ./models).
FROM runtime AS demo
ARG DEMO_REPOSITORY=models
COPY --chown=10001:10001 ${DEMO_REPOSITORY}/ /models/

# The default target (the last stage): the runtime image as it is, serving a repository mounted at /models. It comes
# last so that a plain `docker build .` needs nothing beyond the sources; BuildKit and buildah skip the demo stage.
FROM runtime AS serve
