# One of Liqo's component images (hack/liqo.sh images), laid out as Liqo's build/liqo/Dockerfile:
# the binary at /usr/bin/<COMPONENT>, linked as /usr/bin/liqo-component, the entrypoint. The chart's
# commands name /usr/bin/<COMPONENT>; the gateway's containers use the entrypoint. bin/ holds the
# static binary (empty for cert-creator, which is Debian's openssl).
ARG BASE
FROM ${BASE}
# Before COMPONENT, so the gateway's three images share this layer.
ARG PACKAGES=""
RUN if [ -n "${PACKAGES}" ]; then \
      apt-get update -qq \
      && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends ${PACKAGES} >/dev/null \
      && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/log/apt /var/log/dpkg.log; \
    fi
ARG COMPONENT
COPY bin/ /usr/bin/
RUN test -x "/usr/bin/${COMPONENT}" && ln -s "/usr/bin/${COMPONENT}" /usr/bin/liqo-component
WORKDIR /workspace
ENTRYPOINT ["/usr/bin/liqo-component"]
