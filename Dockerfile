# Carrier in a container: `carrier` is the entrypoint, so `docker run IMAGE serve ...`,
# `docker run IMAGE run --role worker` and `docker run IMAGE db init` are all the same image.
# The commands below are the ones tests/test_containers.py runs (no Docker engine there):
# every `carrier ...` line, the HEALTHCHECK line against a real `carrier serve`, the CMD,
# and the build-time check that the wordllama weights load offline.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
# Only what `pip install .` needs (.dockerignore keeps tests, venvs and data out).
COPY pyproject.toml README.md ./
COPY carrier_cli ./carrier_cli
RUN pip install . && cd / && rm -rf /src

# Nothing may download at run time: the 256-d wordllama weights and its tokenizer ship
# inside the wordllama wheel (wordllama/weights, wordllama/tokenizers); Carrier reads those
# files itself (llm/wordllama_files.py) or loads them through wordllama with
# disable_download. This loads them once at build time, offline, so an image without them
# fails to build instead of failing at the first message.
ENV HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1
RUN python -c "from carrier_cli.llm.embeddings import LocalEmbedder, load_wordllama; load_wordllama(); assert LocalEmbedder().embed_sync(['ok']).shape[-1] == 256" \
    && carrier --help > /dev/null

# A non-root user owning only its data directory. CARRIER_HOME holds config, SQLite (when
# DATABASE_URL is unset), logs and file-backed secrets; mount a volume there.
RUN useradd --system --uid 10001 --user-group --home-dir /data --no-create-home carrier \
    && mkdir -p /data && chown carrier:carrier /data
ENV CARRIER_HOME=/data \
    CARRIER_KEYRING=file \
    CARRIER_API_HOST=0.0.0.0 \
    CARRIER_API_PORT=8000
VOLUME ["/data"]
WORKDIR /data
USER carrier

EXPOSE 8000
# Liveness only (the process answers); orchestrators use /readyz for readiness. slim has no
# curl, so the stdlib does it; the port follows CARRIER_API_PORT like the server does.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD python -c "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('CARRIER_API_PORT', '8000'), timeout=4)"

ENTRYPOINT ["carrier"]
CMD ["serve", "--host", "0.0.0.0"]
