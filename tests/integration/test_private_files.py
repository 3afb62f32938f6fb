"""Private files: the embedded HOME and everything in it (store, append-only file, keys, logs)
are readable by their owner alone, and the fallback socket folder is used only when private."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from spark_integrations import settings
from spark_integrations.workers.embedded import EmbeddedRedis, secure_home
from tests.integration.fleet import base_env, run_cli


def open_to_others(home: Path) -> list[str]:
    found = []
    for path in [home, *home.rglob("*")]:
        info = path.lstat()
        if stat.S_ISSOCK(info.st_mode):
            continue  # the socket's own mode is set by Redis (unixsocketperm 700)
        if stat.S_IMODE(info.st_mode) & 0o077:
            found.append(f"{path.relative_to(home.parent)} {stat.S_IMODE(info.st_mode):o}")
    return found


def test_everything_in_the_embedded_home_is_the_owners_alone(short_tmp: Path) -> None:
    home = short_tmp / "home"
    env = base_env(home)
    try:
        doctor = run_cli(env, "doctor")
        assert doctor.returncode == 0, doctor.stdout + doctor.stderr
        added = run_cli(
            env, "connections", "add", "sandbox", "--name", "p", "--secret", "api_key=k1",
            "--config", '{"base_url": "http://127.0.0.1:9"}',
        )  # fmt: skip
        assert added.returncode == 0, added.stderr
        names = {p.name for p in home.rglob("*")}
        assert {"store.db", "secret.key", "redis.pid", "redis.log"} <= names
        assert any(n.startswith("appendonly") for n in names)
        assert open_to_others(home) == []
        assert stat.S_IMODE(home.stat().st_mode) == 0o700
    finally:
        run_cli(env, "down")


def test_secure_home_closes_what_an_older_version_left_open(tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / "redis").mkdir(parents=True)
    home.chmod(0o755)
    (home / "redis").chmod(0o755)
    for name in ("store.db", "store.db-wal", "redis/appendonly.aof", "demo.log"):
        (home / name).write_text("x")
        (home / name).chmod(0o644)
    outside = tmp_path / "elsewhere.txt"
    outside.write_text("y")
    outside.chmod(0o644)
    (home / "link").symlink_to(outside)
    secure_home(home)
    assert open_to_others(home) == [f"home/link {stat.S_IMODE((home / 'link').lstat().st_mode):o}"]
    assert stat.S_IMODE(outside.stat().st_mode) == 0o644  # a link's target is not ours to change


def test_a_fallback_socket_folder_open_to_others_is_not_used(tmp_path: Path) -> None:
    home = tmp_path.joinpath(*(["a-rather-long-folder-name"] * 8))
    env = base_env(home)
    socket = settings.embedded_redis_socket(home)
    folder = socket.parent
    existed = os.path.lexists(folder)
    if not existed:
        folder.mkdir(mode=0o700)
    mode = stat.S_IMODE(folder.stat().st_mode)
    try:
        folder.chmod(0o777)
        refused = run_cli(env, "doctor")
        assert refused.returncode == 1
        assert "is open to other users" in refused.stdout + refused.stderr
        assert not socket.exists()
        folder.chmod(0o700)
        server = EmbeddedRedis(home, socket)
        assert server.ensure_running()
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    finally:
        folder.chmod(mode)
        run_cli(env, "down")
        if not existed:
            for leftover in folder.iterdir():
                leftover.unlink()
            folder.rmdir()
