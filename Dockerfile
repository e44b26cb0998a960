# syntax=docker/dockerfile:1
# One image for every job: `docker run IMAGE validate|transform|generate [flags]`.
# Spark runs in local mode inside the container (ECS Fargate task = one driver, no cluster).
FROM python:3.11-slim-bookworm

# default-jre-headless is OpenJDK 17 on bookworm (Spark 4 needs Java 17+); tini reaps the JVM.
RUN apt-get update \
    && apt-get install -y --no-install-recommends default-jre-headless=2:1.17-74 tini=0.19.0-1 \
    && rm -rf /var/lib/apt/lists/*

ENV JAVA_HOME=/usr/lib/jvm/default-java \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    ECOM_LOG_FORMAT=json \
    ECOM_JARS_DIR=/opt/ecom/jars

WORKDIR /app
# Dependencies first (pinned by constraints.txt) so code changes do not reinstall them.
COPY pyproject.toml constraints.txt README.md ./
COPY common/ common/
COPY jobs/ jobs/
RUN pip install --constraint constraints.txt .
# The pinned JVM jars (delta-spark, hadoop-aws, AWS SDK modules), fetched by `make jars` before the
# build: nothing is downloaded when the container runs.
COPY .jars/ /opt/ecom/jars/

COPY docker/entrypoint.sh /usr/local/bin/ecom-entrypoint
RUN chmod 0755 /usr/local/bin/ecom-entrypoint \
    && useradd --uid 10001 --user-group --no-create-home --home-dir /tmp app

# Never root: the jobs need nothing beyond /tmp.
USER 10001:10001
ENTRYPOINT ["/usr/bin/tini", "--", "/usr/local/bin/ecom-entrypoint"]
CMD ["--help"]
