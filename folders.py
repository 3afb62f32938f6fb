"""Private folders: used only while they are the user's own and closed to everyone else.

The embedded HOME (:mod:`settings`, :mod:`workers.embedded`) and the per-user folder that holds
the embedded Redis's socket when HOME is too deep for a socket path. In a shared folder such as
``/tmp`` anyone may create a folder by the name the fleet would use, and a socket in it could be
someone else's server.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from spark_integrations.constants import ENV_PREFIX
from spark_integrations.errors import ConfigurationError

__all__ = ["check_private_folder", "make_private_folder"]


def check_private_folder(folder: Path) -> None:
    """Refuse a folder that is not a real directory of this user's, closed to everyone else.

    In a shared folder such as ``/tmp`` anyone may create a folder by the name the fleet would
    use; a socket in it could be someone else's server.

    Raises:
        ConfigurationError: it is a link, not a folder, another user's, or open to others.
    """
    try:
        info = folder.lstat()
    except OSError as exc:
        raise ConfigurationError(f"cannot inspect the folder {folder} ({exc.strerror}).") from None
    if not stat.S_ISDIR(info.st_mode):
        raise ConfigurationError(f"{folder} is not a folder (a link or a file?); remove it.")
    if info.st_uid != os.getuid():
        raise ConfigurationError(
            f"the folder {folder} belongs to another user, so the fleet will not use it; remove "
            f"it, or choose another {ENV_PREFIX}HOME."
        )
    if stat.S_IMODE(info.st_mode) & 0o077:
        raise ConfigurationError(
            f"the folder {folder} is open to other users (mode "
            f"{stat.S_IMODE(info.st_mode):o}); run `chmod 700 {folder}` or remove it."
        )


def make_private_folder(folder: Path) -> None:
    """Create ``folder`` readable by its owner alone (parents as usual), or check the one
    that exists with :func:`check_private_folder`, tightening it when it is this user's own."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    try:
        folder.mkdir(mode=0o700)
    except FileExistsError:
        info = folder.lstat()
        if stat.S_ISDIR(info.st_mode) and info.st_uid == os.getuid() and info.st_mode & 0o077:
            folder.chmod(0o700)
    check_private_folder(folder)
