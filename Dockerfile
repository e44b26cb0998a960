# syntax=docker/dockerfile:1
# One image for every job: `docker run IMAGE validate|transform|generate [flags]`.
# Spark runs in local mode inside the container (an ECS Fargate task is one driver, no cluster).
# Build with `make image`: it prepares the pinned wheels (.wheels/) and jars (.jars/) in the context,
# so the build installs nothing from PyPI or Maven (offline, reproducible).

# --- runtime base: Debian's Python 3.11, OpenJDK 17 (Spark 4 needs Java 17+), tini -------------
FROM debian:bookworm-slim AS runtime
# Debian's stable suite only moves for security fixes, so the major versions are the pins here
# (exact version pins would break the build each time a fix lands on the mirror).
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 openjdk-17-jre-headless tini ca-certificates \
    && rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/*.deb \
    && useradd --uid 10001 --user-group --no-create-home --home-dir /tmp --shell /usr/sbin/nologin app

# --- dependencies: a virtualenv from the pinned wheels only (no index, no compilers) ------------
FROM runtime AS deps
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3-venv \
    && rm -rf /var/lib/apt/lists/*
COPY .wheels/ /tmp/wheels/
RUN python3 -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-cache-dir --no-index --find-links /tmp/wheels \
         --requirement /tmp/wheels/requirements.txt

# --- the image: runtime + venv + jars, then the code (the only layer a code change rebuilds) ----
FROM runtime
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONPATH=/app \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    ECOM_LOG_FORMAT=json \
    ECOM_JARS_DIR=/opt/ecom/jars
COPY --from=deps /opt/venv /opt/venv
# The pinned JVM jars (delta-spark, hadoop-aws, AWS SDK modules): nothing downloads at run time.
COPY .jars/*.jar /opt/ecom/jars/
COPY docker/entrypoint.sh /usr/local/bin/ecom-entrypoint
WORKDIR /app
COPY common/ common/
COPY jobs/ jobs/
# Bytecode compiled at build time: the root filesystem is read-only when the task runs.
RUN python3 -m compileall -q /app

# Never root: the jobs write only to /tmp (a tmpfs in the ECS task and in the tests).
USER 10001:10001
ENTRYPOINT ["/usr/bin/tini", "--", "/usr/local/bin/ecom-entrypoint"]
CMD ["--help"]
