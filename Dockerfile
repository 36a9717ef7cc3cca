# Perf Sentinel container image.
#   docker build -t perfsentinel:0.1.0 .     (or scripts/build-image.sh, which also works without a Docker daemon)
#   docker run --read-only --tmpfs /tmp -v perfsentinel-state:/var/lib/perfsentinel \
#     -v "$PWD/perfsentinel.yml:/etc/perfsentinel/perfsentinel.yml:ro" -p 9977:9977 perfsentinel:0.1.0
# Runs as uid 10001, works with a read-only root filesystem: it writes only to /var/lib/perfsentinel (state_dir:
# the baseline store and the saved history; a volume) and /tmp (Prophet's CmdStan files; a tmpfs or emptyDir).
# tests/test_image.py builds it with scripts/build-image.sh and runs the service from it that way.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---- requirements: the dependency list of pyproject.toml alone, so that the stage below installs the dependencies
# again only when that list changes (not when the version, the code or the docs change)
FROM ${PYTHON_IMAGE} AS requirements
COPY pyproject.toml /src/
RUN python -c "import tomllib; print(*tomllib.load(open('/src/pyproject.toml', 'rb'))['project']['dependencies'], sep=chr(10))" \
    >/requirements.txt

# ---- dependencies: a virtualenv with the dependencies' wheels (every one ships binary wheels: no compiler needed)
FROM ${PYTHON_IMAGE} AS dependencies
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
COPY --from=requirements /requirements.txt /src/requirements.txt
RUN python -m venv /opt/venv && /opt/venv/bin/pip install --no-compile -r /src/requirements.txt
# Then what the service never uses at run time goes (sizes in docs/deploy.md, "Container image"): the test suites
# the wheels ship; matplotlib and the packages only it needs (Prophet imports it for its plots only and works
# without it; HTML reports leave their plots out); the parts of Prophet's bundled CmdStan that compile models (stanc
# and the TBB objects: the compiled model and its libtbb stay, and the makefile that tells cmdstanpy the version)
# and Prophet's second copy of the model; pip and setuptools. Bytecode is compiled here, since the root filesystem
# may be read-only, and used without checking source timestamps.
RUN /opt/venv/bin/pip uninstall -y -q matplotlib contourpy cycler fonttools kiwisolver pillow pyparsing \
    && /opt/venv/bin/pip uninstall -y -q pip setuptools \
    && site=$(/opt/venv/bin/python -c "import sysconfig; print(sysconfig.get_path('purelib'))") \
    && find "$site" -type d -name tests -prune -exec rm -r {} + \
    && rm -r "$site"/prophet/stan_model/cmdstan-*/bin "$site"/prophet/stan_model/cmdstan-*/stan \
             "$site"/prophet/stan_model/prophet \
    && /opt/venv/bin/python -m compileall -q -j 0 --invalidation-mode unchecked-hash /opt/venv/lib

# ---- package: perfsentinel itself, installed under /package (bin/, lib/pythonX.Y/site-packages/) to be merged
# into the venv, so that the final image has it in a small layer of its own
FROM dependencies AS package
WORKDIR /src
COPY pyproject.toml README.md ./
COPY analyzer ./analyzer
COPY exporter ./exporter
RUN /opt/venv/bin/python -m ensurepip >/dev/null \
    && /opt/venv/bin/python -m pip install -q --no-deps --no-compile --prefix /package . \
    && /opt/venv/bin/python -m compileall -q -j 0 --invalidation-mode unchecked-hash /package

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
COPY --from=dependencies /opt/venv /opt/venv
COPY --from=package /package/ /opt/venv/
# bytecode is compiled at build time: nothing is written next to the code
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/var/lib/perfsentinel
USER 10001:10001
WORKDIR /var/lib/perfsentinel
VOLUME ["/var/lib/perfsentinel"]
EXPOSE 9977
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:9977/healthz', timeout=4).status != 200)"]
ENTRYPOINT ["perfsentinel"]
CMD ["run", "--config", "/etc/perfsentinel/perfsentinel.yml", "--listen", "0.0.0.0:9977"]
