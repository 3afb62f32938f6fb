"""settings: private folders (embedded HOME, the fallback socket folder) and the hosts an
operator allows over plain http."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from spark_integrations import settings
from spark_integrations.errors import ConfigurationError

P = "SPARK_INTEGRATIONS_"


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def test_embedded_home_is_created_for_its_owner_alone(tmp_path: Path) -> None:
    home = tmp_path / "new" / "home"
    settings.load({P + "HOME": str(home)})
    assert mode(home) == 0o700
    assert mode(home / "secret.key") == 0o600


def test_make_private_folder_tightens_an_open_folder_of_ours(tmp_path: Path) -> None:
    folder = tmp_path / "open"
    folder.mkdir(mode=0o777)
    folder.chmod(0o777)
    settings.make_private_folder(folder)
    assert mode(folder) == 0o700
    settings.check_private_folder(folder)


def test_an_open_folder_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "open"
    folder.mkdir()
    folder.chmod(0o755)
    with pytest.raises(ConfigurationError) as info:
        settings.check_private_folder(folder)
    assert str(info.value) == (
        f"the folder {folder} is open to other users (mode 755); run `chmod 700 {folder}` "
        "or remove it."
    )


def test_a_link_or_a_file_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "target"
    target.mkdir(mode=0o700)
    link = tmp_path / "link"
    link.symlink_to(target)
    with pytest.raises(ConfigurationError, match="is not a folder"):
        settings.check_private_folder(link)
    with pytest.raises(ConfigurationError, match="is not a folder"):
        settings.make_private_folder(link)
    plain = tmp_path / "file"
    plain.write_text("x")
    with pytest.raises(ConfigurationError, match="is not a folder"):
        settings.check_private_folder(plain)


@pytest.mark.skipif(os.getuid() != 0, reason="needs root to give a folder to another user")
def test_another_users_folder_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "theirs"
    folder.mkdir(mode=0o700)
    os.chown(folder, 4242, 4242)
    with pytest.raises(ConfigurationError, match="belongs to another user"):
        settings.check_private_folder(folder)
    with pytest.raises(ConfigurationError, match="belongs to another user"):
        settings.make_private_folder(folder)


def test_the_fallback_socket_folder_is_used_only_when_private(tmp_path: Path) -> None:
    home = tmp_path.joinpath(*(["a-rather-long-folder-name"] * 8))
    socket = settings.embedded_redis_socket(home)
    assert socket.parent != home
    folder = socket.parent
    existed = os.path.lexists(folder)
    try:
        if not existed:
            folder.mkdir(mode=0o700)
        folder.chmod(0o755)
        with pytest.raises(ConfigurationError, match="is open to other users"):
            settings.load({P + "HOME": str(home)})
        folder.chmod(0o700)
        assert settings.load({P + "HOME": str(home)}).redis_socket == socket
    finally:
        if not existed:
            folder.rmdir()


@pytest.mark.parametrize(
    ("raw", "hosts"),
    [
        ("", frozenset()),
        ("sandbox", frozenset({"sandbox"})),
        (" Sandbox.Internal. , 10.0.0.7,[::1] ", {"sandbox.internal", "10.0.0.7", "::1"}),
        ("a_b.svc.cluster.local,", {"a_b.svc.cluster.local"}),
    ],
)  # fmt: skip
def test_allow_http_hosts_lists_hosts(tmp_path: Path, raw: str, hosts: set[str]) -> None:
    s = settings.load({P + "HOME": str(tmp_path / "h"), P + "ALLOW_HTTP_HOSTS": raw})
    assert s.allow_http_hosts == frozenset(hosts)


@pytest.mark.parametrize("raw", ["http://sandbox", "sandbox:8080", "host/path", "bad host", "*"])
def test_allow_http_hosts_refuses_what_is_not_a_host(tmp_path: Path, raw: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        settings.load({P + "HOME": str(tmp_path / "h"), P + "ALLOW_HTTP_HOSTS": raw})
    assert str(info.value).startswith(f"{P}ALLOW_HTTP_HOSTS holds {raw.lower()!r}, which is not")
