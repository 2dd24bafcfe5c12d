# watcher: one container per customer site.
#   docker build -t watcher .
#   docker run -d --name watcher -v $PWD/site:/config:ro -v watcher-state:/state \
#     -p 127.0.0.1:9177:9177 -e RT_PASSWORD=... watcher
# /config/watcher.yml should say `state: /state/watcher.db` and `listen: 0.0.0.0:9177`.
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    WATCHER_CONFIG=/config/watcher.yml

# openssh-client for ssh-agent sockets and known_hosts tooling; the Nagios plugins so
# `nagios:` probes can run locally too; ca-certificates for TLS verification.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates openssh-client monitoring-plugins-basic procps \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/watcher
COPY pyproject.toml README.md ./
COPY watcher ./watcher
COPY probes ./probes
COPY rules ./rules
COPY integrations ./integrations
RUN pip install '.[apprise]' && rm -rf /root/.cache

RUN useradd --system --uid 10001 --user-group --home-dir /state --shell /usr/sbin/nologin watcher \
 && mkdir -p /config /state \
 && chown watcher:watcher /state
USER watcher
WORKDIR /state
VOLUME ["/config", "/state"]
EXPOSE 9177

HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD python -c "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:9177/healthz', timeout=4).status == 200 else 1)"

ENTRYPOINT ["watcher"]
CMD ["run"]
