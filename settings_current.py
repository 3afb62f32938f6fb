"""The fleet's settings as this process read them, once.

:func:`settings.load` reads the variables each time it is called, and in embedded mode the home
folder and its secret key file too. Code that runs for every task or event (task code through
:mod:`tasks.context`, the events of :mod:`webhooks.outbound`) takes the settings from here
instead: read on first use, then kept for the life of the process. A fork keeps them (they hold
no socket). A neutral module beside :mod:`settings`: every package may import it.
"""

from __future__ import annotations

from functools import cache

import spark_integrations.settings as settings_module
from spark_integrations.settings import Settings

__all__ = ["current_settings"]


@cache
def current_settings() -> Settings:
    """The fleet's settings, read once per process (``current_settings.cache_clear()`` reads
    them again on next use)."""
    return settings_module.load()
