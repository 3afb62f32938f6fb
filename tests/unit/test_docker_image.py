"""docker/Dockerfile and the build context's .dockerignore, checked without a Docker engine.

The image is built in two stages: the wheel once, installed with ``pip install --no-cache-dir``
into a virtual environment; the final stage takes that environment alone and runs as a non-root
user. Its entry point is the fleet's console script and its default command one of the CLI's.
The .dockerignore keeps every file the wheel is built from (read from pyproject.toml's package
list) and leaves out what must not reach it (a local build/ folder, the virtual environment, .git,
tests).
"""

from __future__ import annotations

import json
import re
import subprocess
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.unit.test_docker_compose import ROOT, load_compose, parse_command

DOCKERFILE = ROOT / "docker" / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"


@dataclass(frozen=True)
class Instruction:
    keyword: str
    value: str
    stage: int  # 0 for what comes before the first FROM


def instructions(text: str) -> list[Instruction]:
    """The Dockerfile's instructions, continuation lines joined and comments dropped."""
    found: list[Instruction] = []
    stage = 0
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        pending += line.removesuffix("\\").strip() + " "
        if line.endswith("\\"):
            continue
        keyword, _, value = pending.strip().partition(" ")
        pending = ""
        if keyword.upper() == "FROM":
            stage += 1
        found.append(Instruction(keyword.upper(), value.strip(), stage))
    return found


@pytest.fixture(scope="module")
def dockerfile() -> list[Instruction]:
    return instructions(DOCKERFILE.read_text())


def final(dockerfile: list[Instruction], keyword: str) -> list[Instruction]:
    last = dockerfile[-1].stage
    return [i for i in dockerfile if i.keyword == keyword and i.stage == last]


def test_the_instruction_reader() -> None:
    text = "FROM a AS b\n# note\nRUN x \\\n    && y\nFROM c\nUSER 1\n"
    assert instructions(text) == [
        Instruction("FROM", "a AS b", 1),
        Instruction("RUN", "x && y", 1),
        Instruction("FROM", "c", 2),
        Instruction("USER", "1", 2),
    ]


def test_two_stages_the_wheel_built_once_and_installed_without_cache(
    dockerfile: list[Instruction],
) -> None:
    stages = [i for i in dockerfile if i.keyword == "FROM"]
    assert len(stages) == 2 and stages[0].value.endswith(" AS build")
    runs = " ".join(i.value for i in dockerfile if i.keyword == "RUN")
    assert runs.count("pip wheel") == 1
    installs = re.findall(r"pip install [^&]*", runs)
    assert installs and all("--no-cache-dir" in i for i in installs), installs
    # The final stage takes the built environment and nothing of the source.
    copies = final(dockerfile, "COPY")
    assert copies and all(c.value.startswith("--from=build ") for c in copies), copies
    assert not [i for i in final(dockerfile, "RUN") if "pip" in i.value]


def test_the_image_runs_as_a_non_root_user(dockerfile: list[Instruction]) -> None:
    (user,) = final(dockerfile, "USER")
    uid = user.value.split(":")[0]
    assert uid.isdigit() and int(uid) != 0, "a numeric, non-root uid (checkable by runAsNonRoot)"
    creating = " ".join(i.value for i in final(dockerfile, "RUN"))
    assert f"--uid {uid}" in creating
    # Nothing after USER switches back.
    assert dockerfile[-1].stage == user.stage
    after = dockerfile[dockerfile.index(user) :]
    assert not [i for i in after if i.keyword == "RUN"]


def test_entrypoint_and_command_are_the_fleets(dockerfile: list[Instruction]) -> None:
    (entrypoint,) = final(dockerfile, "ENTRYPOINT")
    (command,) = final(dockerfile, "CMD")
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert json.loads(entrypoint.value) == ["spark-integrations"]
    assert scripts["spark-integrations"] == "spark_integrations.workers.cli:main"
    default, _ = parse_command(json.loads(command.value))
    assert default.name == "worker"
    # The compose file's services run this image with commands of their own.
    fleet = load_compose()["x-fleet"]
    assert fleet["build"] == {"context": "..", "dockerfile": "docker/Dockerfile"}
    assert "entrypoint" not in fleet


def test_the_image_exposes_the_ports_compose_uses(dockerfile: list[Instruction]) -> None:
    (expose,) = final(dockerfile, "EXPOSE")
    services = load_compose()["services"]
    published = {
        int(p.rsplit(":", 1)[1]) for s in ("gateway", "flower") for p in services[s]["ports"]
    }
    assert published == {int(p) for p in expose.value.split()}


# --- the build context -----------------------------------------------------------------------


def ignore_pattern(pattern: str) -> re.Pattern[str]:
    """A .dockerignore pattern as Docker matches it (Go's filepath.Match plus ``**``), anchored
    at the context's root."""
    out = ""
    i = 0
    pattern = pattern.strip("/")
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out)


def ignored(path: str, patterns: list[re.Pattern[str]]) -> bool:
    """Whether Docker leaves ``path`` out: a pattern matches it or one of its folders."""
    parts = path.split("/")
    prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    return any(p.fullmatch(prefix) for p in patterns for prefix in prefixes)


def context_patterns() -> list[re.Pattern[str]]:
    lines = [ln.strip() for ln in DOCKERIGNORE.read_text().splitlines()]
    patterns = [ln for ln in lines if ln and not ln.startswith("#")]
    assert not [p for p in patterns if p.startswith("!")], "exceptions are not modelled here"
    return [ignore_pattern(p) for p in patterns]


def test_the_pattern_matcher() -> None:
    patterns = [ignore_pattern(p) for p in ("build", "*.egg-info", "**/__pycache__")]
    assert ignored("build/lib/x.py", patterns)
    assert ignored("a.egg-info/PKG-INFO", patterns)
    assert not ignored("sub/a.egg-info/PKG-INFO", patterns)  # anchored at the root
    assert ignored("__pycache__/x.pyc", patterns) and ignored("a/b/__pycache__/x.pyc", patterns)
    assert not ignored("builder.py", patterns) and not ignored("workers/build.py", patterns)


def wheel_sources() -> list[str]:
    """The repository's files the wheel is built from: pyproject.toml and its readme, and each
    package's modules and package data (pyproject.toml's package list and package-data)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    tool = project["tool"]["setuptools"]
    top = Path(tool["package-dir"]["spark_integrations"])
    data = tool["package-data"]
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True, timeout=60
    ).stdout.split()
    wanted = ["pyproject.toml", project["project"]["readme"]]
    for package in tool["packages"]:
        folder = top / package.removeprefix("spark_integrations").lstrip(".").replace(".", "/")
        globs = ["*.py", *data.get(package, [])]
        wanted += [
            f for f in tracked if Path(f).parent == folder and any(Path(f).match(g) for g in globs)
        ]
    return wanted


def test_the_build_context_keeps_what_the_wheel_needs() -> None:
    patterns = context_patterns()
    wanted = wheel_sources()
    assert {"celeryconfig.py", "workers/cli.py", "migrations/script.py.mako"} <= set(wanted)
    assert [f for f in wanted if ignored(f, patterns)] == []


def test_the_build_context_leaves_out_what_must_not_reach_the_wheel() -> None:
    patterns = context_patterns()
    for path in (
        ".git/HEAD",
        ".venv/bin/python",
        "build/lib/spark_integrations/old_module.py",
        "automagik_spark_integrations.egg-info/PKG-INFO",
        "workers/__pycache__/cli.cpython-311.pyc",
        "tests/unit/test_docker_image.py",
        "client/pyproject.toml",
    ):
        assert ignored(path, patterns), path
