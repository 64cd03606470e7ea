# edgeflow as a container: `docker build -t edgeflow .` then
#   docker run -v $PWD/edgeflow.yaml:/etc/edgeflow/edgeflow.yaml:ro -v edgeflow-data:/var/lib/edgeflow edgeflow
# The configuration is read from /etc/edgeflow/edgeflow.yaml (a ConfigMap in deploy/kubernetes), the outbox
# and rule state live in /var/lib/edgeflow (a volume: they are what survives a restart), credentials come
# from files or the environment (a Secret), never from the image. tests/test_deploy.py runs this file's
# command line, environment and health check without Docker.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /opt/edgeflow
COPY pyproject.toml README.md ./
COPY edgeflow ./edgeflow
COPY connectors ./connectors
RUN pip install ".[all]" \
 && useradd --system --uid 10001 --home-dir /var/lib/edgeflow --shell /usr/sbin/nologin edgeflow \
 && mkdir -p /etc/edgeflow /var/lib/edgeflow \
 && chown edgeflow /var/lib/edgeflow \
 && chmod 0700 /var/lib/edgeflow

USER 10001
WORKDIR /var/lib/edgeflow
# Metrics and health on every interface of the pod (the config may say otherwise); JSON logs for the
# node's log collector.
ENV EDGEFLOW__METRICS__LISTEN=0.0.0.0:9464
EXPOSE 9464
VOLUME ["/var/lib/edgeflow"]

HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:9464/healthz', timeout=4).status == 200 else 1)"]

ENTRYPOINT ["edgeflow", "run", "--log-format", "json"]
CMD ["/etc/edgeflow/edgeflow.yaml"]
