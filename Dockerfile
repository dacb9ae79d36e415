# The gps-monitor image: one image, every service (`gps-monitor ingest|rules|web|jt808|db ...`).
#   docker build -t gps-monitor .        (docker-compose.yml builds it as gps-monitor:latest)
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# CJK font for the evidence PDFs and charts (GPS_MONITOR_REPORTS_CJK_FONT_PATH default), time
# zone data for Asia/Shanghai day boundaries.
RUN apt-get update \
 && apt-get install -y --no-install-recommends fonts-wqy-microhei tzdata \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY pyproject.toml README.md ./
COPY gps_monitor ./gps_monitor
COPY ingest ./ingest
COPY rules ./rules
COPY web ./web
COPY notify ./notify
COPY jt809 ./jt809
RUN pip install . \
 && useradd --system --uid 10001 --home-dir /app --shell /usr/sbin/nologin gpsmon \
 && mkdir -p /var/lib/gps-monitor/media && chown gpsmon /var/lib/gps-monitor/media

COPY deploy/healthcheck.py /usr/local/bin/gps-monitor-healthcheck
RUN chmod 0755 /usr/local/bin/gps-monitor-healthcheck

USER gpsmon
EXPOSE 8000 8808 8810
ENTRYPOINT ["gps-monitor"]
CMD ["--help"]
