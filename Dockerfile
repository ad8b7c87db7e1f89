# syntax=docker/dockerfile:1
# liqosec controller image. Two stages so the runtime image carries no pip cache, no build
# backend and no source tree: only a virtualenv with liqosec and its PyPI dependencies.
#
#   docker build -t liqosec:dev .
#   docker run --rm liqosec:dev --help
ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
# A virtualenv is a self-contained directory: copying it is the whole install.
RUN python -m venv /opt/liqosec
WORKDIR /src
# README* may be absent; pyproject.toml always matches, so COPY does not fail on the glob.
COPY pyproject.toml README* ./
COPY liqosec ./liqosec
RUN /opt/liqosec/bin/pip install . \
 && /opt/liqosec/bin/python -m compileall -q /opt/liqosec \
 && /opt/liqosec/bin/liqosec --help >/dev/null

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="liqosec" \
      org.opencontainers.image.description="Per-peering network security for Liqo" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /opt/liqosec /opt/liqosec
# Bytecode is compiled at build time; the root filesystem is read-only at run time.
ENV PATH=/opt/liqosec/bin:${PATH} \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# 65532 is distroless' "nonroot": the same uid the manifests' runAsUser names.
USER 65532:65532
WORKDIR /tmp
EXPOSE 8080 8081
ENTRYPOINT ["liqosec"]
CMD ["run"]
