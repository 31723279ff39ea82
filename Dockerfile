# The codeclm image (used by docker-compose.yml for the workers and the topic set-up).
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY streams streams
COPY agents agents
COPY schemas schemas
COPY llm llm
RUN pip install --no-cache-dir . && useradd --create-home codeclm
USER codeclm
# Faust's local state; the worker's /healthz, /metrics and /lag listen on 6066 (see compose).
ENV CODECLM_WORKER__DATA_DIR=/home/codeclm/state PYTHONUNBUFFERED=1
EXPOSE 6066
ENTRYPOINT ["codeclm"]
CMD ["worker"]
