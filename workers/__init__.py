"""Workers: the Celery app, its signals, the embedded Redis and the command line."""

from __future__ import annotations

__all__: list[str] = []
