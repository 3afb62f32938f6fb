"""Private files over generated states (hypothesis, 1,000 cases each): whatever an embedded HOME
holds and however it was left, secure_home leaves nothing in it open to others; a socket folder
is accepted exactly when it is a real folder of this user's, closed to everyone else."""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spark_integrations.errors import ConfigurationError
from spark_integrations.folders import check_private_folder, make_private_folder
from spark_integrations.workers.embedded import STORE_FILE, secure_home

MODES = st.integers(min_value=0o400, max_value=0o777).map(lambda m: m | 0o700)
NAMES = st.sampled_from(["store.db", "store.db-wal", "secret.key", "redis.pid", "demo.log", "x"])
FOLDERS = st.lists(st.sampled_from(["redis", "demo", "appendonlydir"]), max_size=2)
TREE = st.lists(st.tuples(FOLDERS, NAMES, MODES), max_size=6)


@settings(max_examples=1000, deadline=None)
@given(home_mode=MODES, tree=TREE, folder_modes=st.lists(MODES, min_size=3, max_size=3))
def test_secure_home_leaves_nothing_open_to_others(
    home_mode: int, tree: list[tuple[list[str], str, int]], folder_modes: list[int]
) -> None:
    base = Path(tempfile.mkdtemp())
    try:
        home = base / "home"
        home.mkdir()
        outside = base / "outside"
        outside.write_text("o")
        outside.chmod(0o644)
        for folders, name, mode in tree:
            folder = home.joinpath(*folders)
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / name
            if path.is_dir():
                continue
            path.write_text("x")
            path.chmod(mode)
        for folder, mode in zip(["redis", "demo", "appendonlydir"], folder_modes, strict=True):
            if (home / folder).is_dir():
                (home / folder).chmod(mode)
        (home / "link").symlink_to(outside)
        home.chmod(home_mode)
        secure_home(home)
        assert stat.S_IMODE(home.stat().st_mode) == 0o700
        assert (home / STORE_FILE).exists()
        for path in home.rglob("*"):
            info = path.lstat()
            if stat.S_ISLNK(info.st_mode):
                continue
            assert not stat.S_IMODE(info.st_mode) & 0o077, path
        assert stat.S_IMODE(outside.stat().st_mode) == 0o644
    finally:
        shutil.rmtree(base)


@settings(max_examples=1000, deadline=None)
@given(
    kind=st.sampled_from(["folder", "file", "link", "missing"]),
    mode=st.integers(min_value=0, max_value=0o777),
    foreign=st.booleans(),
)
def test_a_socket_folder_is_used_only_when_private(kind: str, mode: int, foreign: bool) -> None:
    base = Path(tempfile.mkdtemp())
    try:
        folder = base / "sock"
        if kind == "folder":
            folder.mkdir()
            folder.chmod(mode | 0o700)
        elif kind == "file":
            folder.write_text("x")
        elif kind == "link":
            (base / "real").mkdir(mode=0o700)
            folder.symlink_to(base / "real")
        owner_is_other = foreign and kind == "folder" and os.getuid() == 0
        if owner_is_other:
            os.chown(folder, 4242, 4242)
        private = kind == "folder" and not owner_is_other and not (mode & 0o077)
        if kind == "missing":
            with pytest.raises(ConfigurationError):
                check_private_folder(folder)
            make_private_folder(folder)
            check_private_folder(folder)
            assert stat.S_IMODE(folder.lstat().st_mode) == 0o700
            return
        if private:
            check_private_folder(folder)
        else:
            with pytest.raises(ConfigurationError) as info:
                check_private_folder(folder)
            assert "\n" not in str(info.value)
        if kind == "folder" and not owner_is_other:
            make_private_folder(folder)  # ours: tightened, then accepted
            assert stat.S_IMODE(folder.lstat().st_mode) == 0o700
        elif not private:
            with pytest.raises(ConfigurationError):
                make_private_folder(folder)
    finally:
        shutil.rmtree(base)
