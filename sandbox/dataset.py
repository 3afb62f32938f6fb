"""The ``items`` dataset: records kept sorted by ``(updated_at, id)``, and the churn thread.

Listings are slices of one sorted list of keys found with :mod:`bisect`, and each record keeps
its JSON bytes ready, so a 100-record page of a 100,000-record dataset costs a bisect and a join.
An update removes the record's key and appends the new one: ``updated_at`` is strictly
increasing across all updates, so the new key always sorts last.

A *replica* stands for a lagging read replica: :meth:`Dataset.snapshot` copies the records as
they are, and while :meth:`Dataset.read_replica` is on, listings and reads serve that copy (old
versions of records changed since) while updates go on in the primary.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import random
import threading
import time
from bisect import bisect_left, bisect_right
from dataclasses import dataclass

from spark_integrations.sandbox.common import dumps, iso_from_us, now_us
from spark_integrations.sandbox.state import Stats

__all__ = ["ChurnThread", "Dataset", "Item", "decode_cursor", "encode_cursor"]

Key = tuple[int, str]

_WORDS = (
    "alpha", "bravo", "cobalt", "delta", "ember", "falcon", "garnet", "harbor",
    "indigo", "juniper", "krypton", "lumen", "meadow", "nimbus", "onyx", "prism",
)  # fmt: skip


def encode_cursor(key: Key) -> str:
    """An opaque URL-safe cursor for "after this ``(updated_at, id)``"."""
    raw = f"{key[0]}:{key[1]}".encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def decode_cursor(cursor: str) -> Key:
    """The key inside a cursor of :func:`encode_cursor`.

    Raises:
        ValueError: not a cursor this sandbox made.
    """
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        us, sep, item_id = raw.partition(":")
        if not sep or not item_id:
            raise ValueError(cursor)
        return int(us), item_id
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise ValueError(f"invalid cursor {cursor!r}") from None


@dataclass(slots=True)
class Item:
    """One record; ``raw`` is its JSON, rebuilt on every update."""

    id: str
    name: str
    value: int
    version: int
    updated_us: int
    raw: bytes = b""

    def encode(self) -> None:
        """Refresh :attr:`raw` from the fields."""
        self.raw = dumps(
            {
                "id": self.id,
                "name": self.name,
                "value": self.value,
                "version": self.version,
                "updated_at": iso_from_us(self.updated_us),
            }
        )


class Dataset:
    """``records`` items with distinct past ``updated_at``, thread-safe under the sandbox lock."""

    def __init__(
        self, records: int, rng: random.Random, lock: threading.Lock, stats: Stats
    ) -> None:
        """Generate the records; their times are one second apart (plus jitter), shuffled by id."""
        self._lock = lock
        self._rng = rng
        self._stats = stats
        self._items: dict[str, Item] = {}
        self._ids: list[str] = [f"item-{n:06d}" for n in range(1, records + 1)]
        start = now_us() - (records + 60) * 1_000_000
        times = [start + n * 1_000_000 + rng.randrange(999_000) for n in range(records)]
        rng.shuffle(times)
        for n, item_id in enumerate(self._ids):
            item = Item(
                item_id, f"{rng.choice(_WORDS)} {n + 1}", rng.randrange(10_000), 1, times[n]
            )
            item.encode()
            self._items[item_id] = item
        self._keys: list[Key] = sorted((i.updated_us, i.id) for i in self._items.values())
        self._last_us = self._keys[-1][0] if self._keys else start
        self._replica: tuple[dict[str, Item], list[Key]] | None = None
        self._reads_replica = False

    def __len__(self) -> int:
        """Number of records."""
        return len(self._ids)

    def snapshot(self) -> None:
        """Copy the records as they are now into the replica."""
        with self._lock:
            items = {k: dataclasses.replace(v) for k, v in self._items.items()}
            self._replica = (items, list(self._keys))

    def read_replica(self, on: bool) -> None:
        """Serve reads from the replica (``on``) or from the primary.

        Raises:
            ValueError: ``on`` without a snapshot taken first.
        """
        with self._lock:
            if on and self._replica is None:
                raise ValueError("take a snapshot before reading from the replica")
            self._reads_replica = on

    def _view(self) -> tuple[dict[str, Item], list[Key]]:
        """The records reads see (the caller holds the lock)."""
        if self._reads_replica and self._replica is not None:
            return self._replica
        return self._items, self._keys

    def get(self, item_id: str) -> bytes | None:
        """One record's JSON, or None."""
        with self._lock:
            item = self._view()[0].get(item_id)
            return None if item is None else item.raw

    def after(
        self, since_us: int | None, after: Key | None, limit: int
    ) -> tuple[list[bytes], Key | None]:
        """Up to ``limit`` records with ``updated_at >= since`` strictly after key ``after``.

        Returns:
            The records' JSON and the cursor key of the last one, or None on the last page.
        """
        with self._lock:
            items, keys = self._view()
            start = 0 if since_us is None else bisect_left(keys, (since_us, ""))
            if after is not None:
                start = max(start, bisect_right(keys, after))
            page = keys[start : start + limit]
            rows = [items[k[1]].raw for k in page]
            more = start + limit < len(keys)
        return rows, (page[-1] if more and page else None)

    def listing(
        self,
        since_us: int | None,
        after: Key | None,
        limit: int,
        *,
        newest_first: bool = False,
        tag: str | None = None,
    ) -> tuple[list[bytes], Key | None]:
        """Like :meth:`after`, newest first when asked (the records strictly *before* key
        ``after``, going down to ``since``), and only the records tagged ``tag`` (the first
        word of their name) when given.

        Returns:
            The records' JSON and the cursor key of the last one, or None on the last page.
        """
        with self._lock:
            items, keys = self._view()
            low = 0 if since_us is None else bisect_left(keys, (since_us, ""))
            if newest_first:
                high = len(keys) if after is None else bisect_left(keys, after)
                candidates = range(high - 1, low - 1, -1)
            else:
                start = low if after is None else max(low, bisect_right(keys, after))
                candidates = range(start, len(keys))
            page: list[Key] = []
            more = False
            for index in candidates:
                key = keys[index]
                if tag is not None and items[key[1]].name.split(" ", 1)[0] != tag:
                    continue
                if len(page) == limit:
                    more = True
                    break
                page.append(key)
            rows = [items[k[1]].raw for k in page]
        return rows, (page[-1] if more and page else None)

    def at(self, since_us: int | None, offset: int, limit: int) -> tuple[list[bytes], int]:
        """Records ``offset..offset+limit`` of those updated since ``since_us``, and their total."""
        with self._lock:
            items, keys = self._view()
            base = 0 if since_us is None else bisect_left(keys, (since_us, ""))
            start = base + offset
            rows = [items[k[1]].raw for k in keys[start : start + limit]]
            total = len(keys) - base
        return rows, total

    def update(self, count: int) -> int:
        """Bump version and value of ``count`` random records and stamp them with "now"."""
        if not self._ids or count <= 0:
            return 0
        with self._lock:
            for _ in range(count):
                item = self._items[self._rng.choice(self._ids)]
                index = bisect_left(self._keys, (item.updated_us, item.id))
                del self._keys[index]
                self._last_us = max(now_us(), self._last_us + 1)
                item.updated_us = self._last_us
                item.version += 1
                item.value = self._rng.randrange(10_000)
                item.encode()
                self._keys.append((item.updated_us, item.id))
            self._stats.incr_locked("items_updated", count)
        return count


class ChurnThread(threading.Thread):
    """Updates ``per_second`` records per second, in ten small batches a second, until stopped."""

    TICK = 0.1

    def __init__(self, dataset: Dataset, per_second: float) -> None:
        """Not started yet; call :meth:`start`, then :meth:`stop`."""
        super().__init__(name="sandbox-churn", daemon=True)
        self._dataset = dataset
        self._rate = per_second
        self._stopped = threading.Event()

    def run(self) -> None:
        """Carry fractional updates over so low rates (like 0.5/s) still churn."""
        due = 0.0
        last = time.monotonic()
        while not self._stopped.wait(self.TICK):
            now = time.monotonic()
            due += (now - last) * self._rate
            last = now
            count = int(due)
            due -= count
            self._dataset.update(count)

    def stop(self) -> None:
        """Stop and wait for the thread."""
        self._stopped.set()
        if self.is_alive():
            self.join(timeout=5)
