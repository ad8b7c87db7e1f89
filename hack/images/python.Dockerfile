# Debian's Python (3.11 on bookworm) with venv and `python`: usable as the Dockerfile's PYTHON_IMAGE.
# extra-ca/ holds the build machine's own extra CA certificates (/usr/local/share/ca-certificates),
# so that pip reaches PyPI where the machine's egress re-signs TLS; empty on a normal machine.
ARG BASE
FROM ${BASE}
COPY extra-ca/ /usr/local/share/ca-certificates/
RUN apt-get update -qq \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      python3 python3-venv python-is-python3 ca-certificates >/dev/null \
 && update-ca-certificates >/dev/null \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/log/apt /var/log/dpkg.log \
 && python --version
ENV LANG=C.UTF-8
CMD ["python"]
