# syntax=docker/dockerfile:1.7
#
# The GPU editor worker: one process per GPU, FLUX.1 Kontext dev or Qwen-Image-Edit with region attention.
#
#   docker build -f docker/editor.Dockerfile -t replan/editor:0.1.0-cuda12.8 .
#
# CUDA runtime base plus a CUDA build of torch. The weights are never baked in: mount a Hugging Face cache at
# /models/hf (HF_HOME) or a model directory and pass its path as --model; set HF_HUB_OFFLINE=1 once the
# weights are local. FLUX.1 Kontext dev is gated on the hub (non-commercial license): download it with a token
# you accepted the license with, outside the image.

ARG CUDA_IMAGE=nvidia/cuda:12.8.1-runtime-ubuntu24.04

# ---------------------------------------------------------------------------------------------- builder
FROM ${CUDA_IMAGE} AS builder

# Ubuntu 24.04's Python is 3.12; the venv is copied to the runtime stage, which has the same interpreter path.
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3 python3-venv \
    && rm -rf /var/lib/apt/lists/*
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/venv/bin:$PATH
RUN python3 -m venv /opt/venv

# torch wheels from PyTorch's CUDA index bundle their CUDA libraries; the index's CUDA version must not be
# newer than the base image's driver requirement (cu128 on a 12.8 base).
ARG TORCH_SPEC="torch==2.13.0"
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128
RUN pip install --index-url "${TORCH_INDEX_URL}" "${TORCH_SPEC}"

WORKDIR /src
COPY pyproject.toml README.md ./
# `gpu` adds torchao (FP8 for the fast preset).
ARG EXTRAS=gpu
RUN python - <<'PY' > /tmp/requirements.txt
import os, tomllib
project = tomllib.load(open("pyproject.toml", "rb"))["project"]
requirements = list(project["dependencies"])
for extra in filter(None, os.environ.get("EXTRAS", "").split(",")):
    requirements += project["optional-dependencies"][extra]
print("\n".join(requirements))
PY
RUN pip install -r /tmp/requirements.txt

COPY services services
COPY planner-service planner-service
COPY editor-service editor-service
COPY gateway gateway
COPY eval-worker eval-worker
RUN pip install --no-deps . && replan --version

# ---------------------------------------------------------------------------------------------- runtime
FROM ${CUDA_IMAGE} AS editor

RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3 \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --gid 10001 replan \
    && useradd --uid 10001 --gid 10001 --create-home --home-dir /home/replan --shell /usr/sbin/nologin replan \
    && mkdir -p /models /data \
    && chown replan:replan /models /data

COPY --from=builder /opt/venv /opt/venv
COPY docker/healthcheck.py /opt/replan/healthcheck.py

# TORCHINDUCTOR_CACHE_DIR on the /models mount: compiled kernels survive restarts, which is what keeps the
# warm-up of `--compile` short after the first start.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HF_HOME=/models/hf \
    TORCHINDUCTOR_CACHE_DIR=/models/inductor \
    NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility
WORKDIR /home/replan
USER 10001:10001
EXPOSE 8200
# Liveness only: loading FLUX.1 Kontext takes minutes; /readyz says when the model is in (503 until then).
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "/opt/replan/healthcheck.py", "http://127.0.0.1:8200/healthz"]
ENTRYPOINT ["replan"]
CMD ["serve", "editor", "--backbone", "flux-kontext", "--model", "black-forest-labs/FLUX.1-Kontext-dev", "--device", "cuda:0", "--host", "0.0.0.0", "--port", "8200"]
