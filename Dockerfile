# One image for every stork-py console script (stork-extender, stork-webhook,
# stork-controller, stork-certs, storkctl). Build: docker build -t stork-py:0.1.0 .
# Without Docker, scripts/build-image.sh builds the same image from Debian's packages
# (tests/unit/test_image.py keeps the two alike: base, packages, entry points, user).
FROM debian:bookworm-slim

RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-pip ca-certificates \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /src
COPY setup.cfg pyproject.toml README.md ./
COPY storkcore ./storkcore
COPY extender ./extender
COPY webhook ./webhook
COPY certs ./certs
COPY controller ./controller
COPY localcluster ./localcluster
COPY storkctl ./storkctl
RUN python3 -m pip install --no-cache-dir --break-system-packages . && rm -rf /src \
 && apt-get purge -y python3-pip python3-setuptools python3-wheel

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
# Non-root (the manifests also set runAsNonRoot and a read-only root filesystem).
USER 65532:65532
WORKDIR /tmp
ENTRYPOINT []
CMD ["stork-extender", "--help"]
