"""`Finished`: the orders that finished most recently, by client id, bounded.

An engine runs for months, and every order it ever placed used to stay in the brokers' and the
router's maps: 10,000 of them held 7 MB, and the live broker walked them all at every sync
(12 ms, every 5 s of market time, next to a 2 ms cycle). What a finished order is still needed
for is short-lived:

- refusing its client id again: ids are idempotent (`client_ids`), so the same id comes back
  only while the core can decide the same thing again: its entry's bar for an entry (a trace is
  one coin's bar), its position's exit in flight for an exit (the next exit takes the next leg);
- recognising a late report of it: a user-stream push that lags the REST reply (milliseconds),
  a stream resync after a gap (seconds to minutes), a fill the exchange reports after our cancel.

So each finished order is kept until `FINISHED_KEPT` more have finished after it. A thousand is
hours of trading even for a busy engine (a cycle sends a handful of orders at most), far more
than any of the windows above, and costs about 0.7 MB for the broker's orders. Looking one up
costs the same at any size: what grows with it is memory, never the time of a sync.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator
from typing import Generic, TypeVar

V = TypeVar("V")

# Finished orders kept per broker and by the router (see the module docstring for the size).
FINISHED_KEPT = 1000


class Finished(Generic[V]):
    """The last `size` finished orders (or anything kept of them: the router keeps None), by
    client id; adding one past `size` forgets the one that finished first."""

    def __init__(self, size: int = FINISHED_KEPT) -> None:
        if size < 1:
            raise ValueError(f"a finished-order memory keeps at least one order, got {size}")
        self.size = size
        self._kept: OrderedDict[str, V] = OrderedDict()

    def add(self, client_order_id: str, value: V) -> None:
        """Keep `value` as the newest finished order (again, if it was kept already)."""
        self._kept[client_order_id] = value
        self._kept.move_to_end(client_order_id)
        while len(self._kept) > self.size:
            self._kept.popitem(last=False)

    def get(self, client_order_id: str) -> V | None:
        return self._kept.get(client_order_id)

    def pop(self, client_order_id: str) -> V | None:
        return self._kept.pop(client_order_id, None)

    def __contains__(self, client_order_id: object) -> bool:
        return client_order_id in self._kept

    def __len__(self) -> int:
        return len(self._kept)

    def __iter__(self) -> Iterator[str]:
        """Client ids, the oldest finished first."""
        return iter(self._kept)
