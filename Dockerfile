# One image for every stork-py console script (stork-extender, stork-webhook,
# stork-controller, stork-certs). Build: docker build -t stork-py:0.1.0 .
FROM python:3.12-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1

WORKDIR /src
COPY setup.cfg pyproject.toml README.md ./
COPY storkcore ./storkcore
COPY extender ./extender
COPY webhook ./webhook
COPY certs ./certs
COPY controller ./controller
COPY localcluster ./localcluster
RUN pip install . && rm -rf /src

# Non-root (the manifests also set runAsNonRoot and a read-only root filesystem).
USER 65532:65532
WORKDIR /tmp
ENTRYPOINT []
CMD ["stork-extender", "--help"]
