# soracast: one image for every process (web, worker, release). PyAV's wheels carry their own FFmpeg libraries,
# so no ffmpeg binary or system codec packages are needed.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md LICENSE ./
COPY bot ./bot
COPY adapters ./adapters
COPY storage ./storage
RUN pip install --no-cache-dir --prefix=/install .

FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    SORACAST_DATA_DIR=/data
COPY --from=build /install /usr/local
# Never run as root: a dedicated user owning only its data directory.
RUN useradd --create-home --uid 10001 soracast && mkdir -p /data && chown soracast /data
USER soracast
WORKDIR /home/soracast
VOLUME ["/data"]
EXPOSE 3000
# The Procfile's processes: `soracast web` (Slack over HTTP + webhooks), `soracast discord`, `soracast migrate`.
ENTRYPOINT ["soracast"]
CMD ["web"]
