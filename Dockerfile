# The codeclm worker image (used by docker-compose.yml).
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY streams streams
COPY agents agents
COPY schemas schemas
COPY llm llm
RUN pip install --no-cache-dir .
ENTRYPOINT ["codeclm"]
CMD ["worker"]
