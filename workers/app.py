"""The fleet's Celery app, configured from :mod:`celeryconfig`.

Importing this module reads the settings (a :class:`errors.ConfigurationError` names the variable
at fault); entry points call :func:`workers.runtime.prepare` first, which also brings up the
embedded Redis and store in embedded mode.
"""

from __future__ import annotations

from celery import Celery

from spark_integrations.workers import signals

__all__ = ["app"]

app = Celery("spark_integrations")
app.config_from_object("spark_integrations.celeryconfig")
signals.connect()
