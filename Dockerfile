# Perf Sentinel container image.
#   docker build -t perfsentinel:0.1.0 .
#   docker run --read-only --tmpfs /tmp -v perfsentinel-state:/var/lib/perfsentinel \
#     -v "$PWD/perfsentinel.yml:/etc/perfsentinel/perfsentinel.yml:ro" -p 9977:9977 perfsentinel:0.1.0
# Runs as uid 10001, works with a read-only root filesystem: it writes only to /var/lib/perfsentinel (the baseline
# store, a volume) and /tmp (Prophet's cmdstan scratch files; mount a tmpfs or emptyDir there).

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---- build: install the package and its wheels into a virtualenv (every dependency ships binary wheels, so no
# compiler is needed even here; the venv alone is copied to the final image)
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
RUN python -m venv /opt/venv
COPY pyproject.toml README.md ./
COPY analyzer ./analyzer
COPY exporter ./exporter
RUN /opt/venv/bin/pip install --no-compile . \
    && /opt/venv/bin/python -m compileall -q /opt/venv/lib \
    && /opt/venv/bin/pip uninstall -y pip setuptools

# ---- final: the venv, a non-root user, nothing else
FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="perfsentinel" \
      org.opencontainers.image.description="Seasonal baselines, anomaly scores and regression verdicts for Prometheus metrics" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN groupadd --system --gid 10001 perfsentinel \
    && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/perfsentinel --no-create-home \
       --shell /usr/sbin/nologin perfsentinel \
    && install -d -o 10001 -g 10001 -m 0750 /var/lib/perfsentinel \
    && install -d -m 0755 /etc/perfsentinel
COPY --from=build /opt/venv /opt/venv
# bytecode is compiled at build time (the root filesystem may be read-only); matplotlib, pulled in by Prophet,
# wants a writable config dir
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/var/lib/perfsentinel \
    MPLCONFIGDIR=/tmp/matplotlib
USER 10001:10001
WORKDIR /var/lib/perfsentinel
VOLUME ["/var/lib/perfsentinel"]
EXPOSE 9977
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:9977/healthz', timeout=4).status != 200)"]
ENTRYPOINT ["perfsentinel"]
CMD ["run", "--config", "/etc/perfsentinel/perfsentinel.yml", "--listen", "0.0.0.0:9977"]
