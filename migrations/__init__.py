"""Alembic migrations of the store, shipped in the wheel; run them with :mod:`migrations.runner`."""

from __future__ import annotations

__all__: list[str] = []
