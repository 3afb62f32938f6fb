"""docker/compose.yaml and docker/.env.example, checked without a Docker engine (none runs here).

- The file parses and validates against the Compose Specification's JSON schema (vendored in
  tests/data/compose-spec.json; its ``$comment`` says from where, at which commit, under which
  licence).
- Every command a fleet service runs is a command of the CLI with valid options, parsed by click
  as ``spark-integrations`` parses it; a worker's queues are the fleet's; the Celery commands of
  the workers' health checks exist in Celery's own CLI.
- Every ``SPARK_INTEGRATIONS_*`` variable the file sets or .env.example names is one the fleet
  reads (:func:`settings.load`, which reads every one of them, records what it asks for); every
  variable the file interpolates is named in .env.example, whose values are placeholders: as
  written they are refused, and filled in they make a valid server-mode configuration.
- The shape the issue asks for: Redis with noeviction and appendonly, a migration job the fleet
  waits for, workers per workload, exactly one beat, Flower behind its password, health checks on
  every long-running service, Prometheus scraping the gateway's service and port.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import click
import jsonschema
import pytest
import yaml
from cryptography.fernet import Fernet

from spark_integrations import settings
from spark_integrations.constants import ALL_QUEUES, ENV_PREFIX
from spark_integrations.errors import ConfigurationError
from spark_integrations.workers.cli import cli

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"
COMPOSE = DOCKER / "compose.yaml"
ENV_EXAMPLE = DOCKER / ".env.example"
SCHEMA = ROOT / "tests" / "data" / "compose-spec.json"
#: ${NAME}, ${NAME:-default}, ${NAME-default}, ${NAME:?error}, ${NAME?error}; $$ is a literal $.
INTERPOLATION = re.compile(
    r"\$\$|\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?P<op>:?[-?])?(?P<arg>[^}]*)\}"
)


def load_compose() -> dict[str, Any]:
    return dict(yaml.safe_load(COMPOSE.read_text()))


def env_example() -> dict[str, str]:
    """The variables .env.example sets, as compose reads a .env file (NAME=VALUE lines)."""
    values = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            name, sep, value = line.partition("=")
            assert sep, f".env.example: {line!r} is not NAME=VALUE"
            values[name.strip()] = value.strip()
    return values


def interpolate(text: str, env: Mapping[str, str]) -> str:
    """Compose's interpolation of one value, strictly: a required variable left empty fails."""

    def one(found: re.Match[str]) -> str:
        if found.group(0) == "$$":
            return "$"
        name, op, arg = found.group("name"), found.group("op"), found.group("arg")
        value = env.get(name)
        if op in (":-", "-"):
            empty = value is None or (op == ":-" and value == "")
            return arg if empty else str(value)
        if op in (":?", "?"):
            if value is None or (op == ":?" and value == ""):
                raise ValueError(f"required variable {name} is missing: {arg}")
            return value
        return value or ""

    return INTERPOLATION.sub(one, text)


def interpolated_names(node: Any) -> Iterator[str]:
    """Every variable name the compose file interpolates, anywhere in it."""
    if isinstance(node, str):
        yield from (m.group("name") for m in INTERPOLATION.finditer(node) if m.group("name"))
    elif isinstance(node, dict):
        for value in node.values():
            yield from interpolated_names(value)
    elif isinstance(node, list):
        for value in node:
            yield from interpolated_names(value)


def fleet_services(compose: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The services that run the fleet's own image (built from docker/Dockerfile)."""
    return {
        name: service
        for name, service in compose["services"].items()
        if service.get("build", {}).get("dockerfile") == "docker/Dockerfile"
    }


def parse_command(args: list[str]) -> tuple[click.Command, click.Context]:
    """Resolve ``spark-integrations ARGS`` to its command and parse its options, as click does
    when it runs it (types and ranges checked), without running it."""
    command: click.Command = cli
    ctx: click.Context | None = None
    name, rest = "spark-integrations", list(args)
    while isinstance(command, click.Group):
        ctx = click.Context(command, info_name=name, parent=ctx)
        found, sub, rest = command.resolve_command(ctx, rest)
        assert found is not None and sub is not None, args
        name, command = found, sub
    return command, command.make_context(name, rest, parent=ctx)


def recorded_variables(env: Mapping[str, str]) -> set[str]:
    """The SPARK_INTEGRATIONS_* variables :func:`settings.load` asks ``env`` for."""

    asked: set[str] = set()

    class Recording(dict[str, str]):
        def get(self, key: str, default: Any = None) -> Any:
            asked.add(key)
            return super().get(key, default)

        def __getitem__(self, key: str) -> str:
            asked.add(key)
            return super().__getitem__(key)

    settings.load(Recording(env))
    return {name for name in asked if name.startswith(ENV_PREFIX)}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load_compose()


@pytest.fixture
def fleet_variables(tmp_path: Path, fernet_key: str) -> set[str]:
    """Every variable the fleet reads: settings.load in embedded and in server mode."""
    embedded = recorded_variables({ENV_PREFIX + "HOME": str(tmp_path / "home")})
    server = recorded_variables(
        {
            ENV_PREFIX + "HOME": str(tmp_path / "home"),
            ENV_PREFIX + "BROKER_URL": "redis://redis:6379/0",
            ENV_PREFIX + "DATABASE_URL": "postgresql+psycopg://fleet@postgres/fleet",
            ENV_PREFIX + "SECRET_KEYS": fernet_key,
        }
    )
    return embedded | server


def test_it_parses_and_validates_against_the_compose_schema(compose: dict[str, Any]) -> None:
    schema = json.loads(SCHEMA.read_text())
    assert "compose-spec/compose-spec" in schema["$comment"]
    validator = jsonschema.Draft7Validator(schema)
    errors = [f"{'/'.join(map(str, e.path))}: {e.message}" for e in validator.iter_errors(compose)]
    assert errors == []
    # The schema catches a mistake: an unknown key of a service.
    broken = {**compose, "services": {**compose["services"], "beat": {"image": "x", "comand": []}}}
    assert list(validator.iter_errors(broken))


def test_every_fleet_command_is_a_cli_command_with_valid_options(
    compose: dict[str, Any],
) -> None:
    services = fleet_services(compose)
    assert set(services) >= {"migrate", "beat", "gateway", "flower"}
    ran = {}
    for name, service in services.items():
        command, ctx = parse_command(service["command"])
        ran[name] = command.name
        if command.name == "worker":
            queues = ctx.params["queues"].split(",")
            assert queues and set(queues) <= set(ALL_QUEUES), (name, queues)
    assert ran["migrate"] == "upgrade"
    assert sorted(ran.values()).count("beat") == 1
    # A command the CLI does not have, or an option it refuses, is caught.
    for wrong in (["workers"], ["gateway", "--port", "http"], ["db", "migrate"]):
        with pytest.raises(click.UsageError):
            parse_command(wrong)


def test_workers_share_the_queues_between_them(compose: dict[str, Any]) -> None:
    """Each queue is consumed by exactly one kind of worker, and every queue by one."""
    consumed: list[str] = []
    for service in fleet_services(compose).values():
        command, ctx = parse_command(service["command"])
        if command.name == "worker":
            consumed += ctx.params["queues"].split(",")
            # Each names itself ROLE@host, as its health check asks for it.
            (extra,) = [a for a in ctx.params["extra"] if a.startswith("--hostname=")]
            role = extra.removeprefix("--hostname=").removesuffix("@%h")
            assert f"--destination {role}@$$HOSTNAME" in " ".join(service["healthcheck"]["test"])
    assert sorted(consumed) == sorted(ALL_QUEUES)


def test_the_workers_health_check_is_a_celery_command(compose: dict[str, Any]) -> None:
    from celery.bin.celery import celery as celery_cli
    from celery.worker.control import Panel

    workers = [s for s in fleet_services(compose).values() if s["command"][0] == "worker"]
    assert len(workers) == 3
    for service in workers:
        kind, line = service["healthcheck"]["test"]
        assert kind == "CMD-SHELL"
        args = interpolate(line, {}).split()  # $$HOSTNAME reaches the shell as $HOSTNAME
        assert args[:3] == ["celery", "--app", "spark_integrations.workers.app"]
        inspect = celery_cli.get_command(click.Context(celery_cli), args[3])
        assert inspect is not None and args[3] == "inspect"
        parsed = inspect.make_context("inspect", args[4:]).params
        assert Panel.meta[parsed["command"]].type == "inspect"
        assert parsed["command"] == "ping" and parsed["destination"][0].endswith("@$HOSTNAME")
        assert service["healthcheck"]["timeout"] == "30s" and parsed["timeout"] < 30


def test_every_variable_compose_sets_is_one_the_fleet_reads(
    compose: dict[str, Any], fleet_variables: set[str]
) -> None:
    assert {
        ENV_PREFIX + n for n in ("BROKER_URL", "SECRET_KEYS", "CONSOLE_TOKEN")
    } <= fleet_variables
    set_here = set()
    for name, service in compose["services"].items():
        for variable in service.get("environment", {}):
            if variable.startswith(ENV_PREFIX):
                assert variable in fleet_variables, f"{name} sets {variable}, which nothing reads"
                set_here.add(variable)
    named = {v for v in env_example() if v.startswith(ENV_PREFIX)}
    assert named - fleet_variables == set(), ".env.example names a variable nothing reads"
    # Every variable the fleet's services get from .env is one compose passes on.
    assert named <= set_here
    # A misspelt variable would be caught.
    assert ENV_PREFIX + "FLOWER_AUTH" not in fleet_variables


def test_every_interpolated_variable_is_named_in_the_example(compose: dict[str, Any]) -> None:
    names = set(interpolated_names(compose))
    assert {"POSTGRES_PASSWORD", ENV_PREFIX + "SECRET_KEYS"} <= names
    assert names - set(env_example()) == set()


def fleet_environment(compose: dict[str, Any], dotenv: Mapping[str, str]) -> dict[str, str]:
    """The environment a fleet service gets, interpolated from ``dotenv``."""
    service = compose["services"]["worker-calls"]
    return {k: interpolate(str(v), dotenv) for k, v in service["environment"].items()}


def test_the_example_holds_placeholders_that_the_fleet_refuses(
    compose: dict[str, Any], tmp_path: Path
) -> None:
    example = env_example()
    env = fleet_environment(compose, example)
    env[ENV_PREFIX + "HOME"] = str(tmp_path / "home")
    with pytest.raises(ConfigurationError, match=ENV_PREFIX + "SECRET_KEYS"):
        settings.load(env)
    for name in (ENV_PREFIX + "FLOWER_BASIC_AUTH", "POSTGRES_PASSWORD", ENV_PREFIX + "SECRET_KEYS"):
        assert "replace" in example[name].lower(), f"{name} must be a visible placeholder"


def test_filled_in_it_is_a_valid_server_configuration(
    compose: dict[str, Any], tmp_path: Path
) -> None:
    example = env_example()
    with pytest.raises(ValueError, match="POSTGRES_PASSWORD"):
        fleet_environment(compose, {k: v for k, v in example.items() if k != "POSTGRES_PASSWORD"})
    filled = {
        **example,
        "POSTGRES_PASSWORD": "a-long-password",
        ENV_PREFIX + "SECRET_KEYS": Fernet.generate_key().decode(),
        ENV_PREFIX + "FLOWER_BASIC_AUTH": "ops:another-long-password",
    }
    env = fleet_environment(compose, filled)
    env[ENV_PREFIX + "HOME"] = str(tmp_path / "home")
    loaded = settings.load(env)
    assert loaded.mode == "server"
    assert loaded.broker_url == loaded.redis_url == "redis://redis:6379/0"
    assert loaded.database_url == "postgresql+psycopg://fleet:a-long-password@postgres:5432/fleet"
    assert loaded.flower_basic_auth == "ops:another-long-password"
    postgres = compose["services"]["postgres"]["environment"]
    assert interpolate(postgres["POSTGRES_PASSWORD"], filled) == "a-long-password"
    assert (postgres["POSTGRES_USER"], postgres["POSTGRES_DB"]) == ("fleet", "fleet")


def test_the_fleet_shape(compose: dict[str, Any]) -> None:
    services = compose["services"]
    redis_command = " ".join(services["redis"]["command"])
    assert "--maxmemory-policy noeviction" in redis_command
    assert "--appendonly yes" in redis_command
    for name, service in fleet_services(compose).items():
        if name == "migrate":
            assert service["restart"] == "no"
            assert "healthcheck" not in service
            continue
        # Long-running: restarted, health-checked, and started after the migration (but Flower,
        # which needs no store).
        assert service["restart"] == "unless-stopped", name
        assert service["healthcheck"]["test"], name
        if name != "flower":
            assert service["depends_on"]["migrate"] == {
                "condition": "service_completed_successfully"
            }, name
    for name in ("redis", "postgres", "prometheus", "grafana"):
        assert services[name]["healthcheck"]["test"], name
    assert services["gateway"]["ports"] == ["8130:8130"]
    assert "/healthz" in " ".join(services["gateway"]["healthcheck"]["test"])
    assert "/healthcheck" in " ".join(services["flower"]["healthcheck"]["test"])
    # Flower's password is required: compose refuses to start without it.
    auth = services["flower"]["environment"][ENV_PREFIX + "FLOWER_BASIC_AUTH"]
    assert auth.startswith("${" + ENV_PREFIX + "FLOWER_BASIC_AUTH:?")
    assert services["prometheus"]["profiles"] == services["grafana"]["profiles"] == ["monitoring"]


def test_prometheus_scrapes_the_gateway_compose_defines(compose: dict[str, Any]) -> None:
    config = yaml.safe_load((DOCKER / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    gateway = compose["services"]["gateway"]
    _, ctx = parse_command(gateway["command"])
    target = f"gateway:{ctx.params['port']}"
    assert jobs["spark-integrations"].get("metrics_path", "/metrics") == "/metrics"
    assert [target] == [
        t for c in jobs["spark-integrations"]["static_configs"] for t in c["targets"]
    ]
    _, flower = parse_command(compose["services"]["flower"]["command"])
    assert jobs["flower"]["static_configs"][0]["targets"] == [f"flower:{flower.params['port']}"]
    mounts = compose["services"]["prometheus"]["volumes"]
    assert "./prometheus.yml:/etc/prometheus/prometheus.yml:ro" in mounts


def test_grafana_mounts_the_fleets_dashboard_and_provisioning(compose: dict[str, Any]) -> None:
    mounts = {}
    for volume in compose["services"]["grafana"]["volumes"]:
        source, target = volume.split(":")[:2]
        if source.startswith("./"):
            assert (DOCKER / source).exists(), f"grafana mounts {source}, which is missing"
            mounts[source] = target
    dashboard = json.loads((DOCKER / "grafana" / "dashboard.json").read_text())
    assert dashboard["panels"]
    folder = Path(mounts["./grafana/dashboard.json"]).parent
    assert mounts["./grafana/provisioning"] == "/etc/grafana/provisioning"
    providers = [
        p
        for f in sorted((DOCKER / "grafana" / "provisioning" / "dashboards").glob("*.y*ml"))
        for p in yaml.safe_load(f.read_text())["providers"]
    ]
    assert [Path(p["options"]["path"]) for p in providers] == [folder]
    sources = [
        s
        for f in sorted((DOCKER / "grafana" / "provisioning" / "datasources").glob("*.y*ml"))
        for s in yaml.safe_load(f.read_text())["datasources"]
    ]
    assert [s["url"] for s in sources if s["type"] == "prometheus"] == ["http://prometheus:9090"]


@pytest.mark.skipif(
    shutil.which("docker") is None
    or subprocess.run(["docker", "compose", "version"], capture_output=True).returncode != 0,
    reason="the Docker compose plugin is not installed (Debian's docker.io ships none)",
)
def test_docker_compose_config_accepts_it(tmp_path: Path) -> None:
    """Compose's own check, offline (no engine needed), with the example's values filled in."""
    dotenv = tmp_path / "fleet.env"
    filled = {**env_example(), ENV_PREFIX + "SECRET_KEYS": Fernet.generate_key().decode()}
    dotenv.write_text("".join(f"{k}={v}\n" for k, v in filled.items()))
    done = subprocess.run(
        ["docker", "compose", "--env-file", str(dotenv), "-f", str(COMPOSE), "--profile",
         "monitoring", "config", "--quiet"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
