"""Decoded candle files kept on disk, so a backtest's start stops paying Parquet decoding.

A backtest decodes every column of every store file before its replay starts (`index_history`):
~0.1 s of a quiet 2-core box's wall on the shared month (34 ZSTD files), ~0.35 s in a slow hour,
plus pyarrow's import (~50-80 ms). The same files' raw columns, memory-mapped, load in a few ms.
So a whole-file read of a store-shaped file (int64 timestamp_ms and float64 OHLCV, no nulls) is
written here once, decoded, and later runs map it read-only: the columns are views of the page
cache, no copy, no decoding, no pyarrow.

An entry is one file under `$XDG_CACHE_HOME/hotcoin/candles` (`engine.config.locations`): a
header repeating its key (format version, the source's resolved path, inode, size and
modification time: the identity `TableCache` keys on), then the six columns, each 8-byte
aligned. Its name is a hash of that key, so a rewritten, replaced or appended source
(`HistoryStore.append`) looks for another entry and is decoded again; the header is checked
against the key and the file's length against the row count, so a colliding, truncated or
foreign entry is never served but decoded again and replaced. The columns carry no checksum: one
over the month's ~65 MB would cost what the cache saves; entries are only ever put in place
whole (a temporary file, then `os.replace` in the same folder: parallel writers, such as
optimize's workers, each rename a complete file and a reader keeps the one it mapped) and never
changed in place (a mapped file cut short under its reader would kill it with SIGBUS), and the
candles' own checks (`read_candles`) still run on what is read.

The cache is never why a backtest fails: a folder that is missing and cannot be made, not
writable or full, an unreadable entry, any OSError, and the caller decodes the Parquet file as it
always did (a debug log line says why). The folder is kept under `MAX_BYTES` (least recently
used entries removed after each write; a read refreshes its entry's time). `HOTCOIN_CANDLE_CACHE=
off` turns it off; deleting the folder clears it.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import mmap
import os
import struct
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from engine.config.locations import cache_dir

log = logging.getLogger(__name__)

VERSION = 1  # bump when the layout changes: older entries then miss (another name) and age out
MAX_BYTES = 1 << 30  # the folder's bound (the shared month is ~65 MB)
COLUMNS = ("timestamp_ms", "open", "high", "low", "close", "volume")
DTYPES = (np.dtype(np.int64),) + (np.dtype(np.float64),) * 5
SUFFIX = ".candles"

_MAGIC = b"HCCANDLE"
_HEAD = struct.Struct("<8sIIQQqQ")  # magic, version, path length, inode, size, mtime_ns, rows
_ALIGN = 64

Key = tuple[str, int, int, int]  # the source's resolved path, inode, size, mtime_ns


class CandleColumns:
    """A whole store file's six columns as read-only numpy arrays, by name: what `TableCache`
    keeps in place of an Arrow table for a file read from the cache. Weak-referable, as
    `read_candles` remembers which kept tables passed its checks."""

    __slots__ = ("__weakref__", "arrays", "nbytes", "num_rows")

    def __init__(self, arrays: dict[str, npt.NDArray[Any]]) -> None:
        self.arrays = arrays
        self.num_rows = len(arrays[COLUMNS[0]])
        self.nbytes = sum(a.nbytes for a in arrays.values())

    @property
    def column_names(self) -> list[str]:
        return list(self.arrays)


def enabled() -> bool:
    """Whether the cache is used: `HOTCOIN_CANDLE_CACHE=off` turns it off."""
    return os.environ.get("HOTCOIN_CANDLE_CACHE", "").strip().lower() != "off"


def folder() -> Path:
    return cache_dir() / "candles"


def entry_path(key: Key) -> Path:
    """Where `key`'s entry lives: a hash of the key and the format version."""
    digest = hashlib.sha256(repr((VERSION, *key)).encode("utf-8", "surrogateescape")).hexdigest()
    return folder() / f"{digest[:40]}{SUFFIX}"


def _header(key: Key, rows: int) -> bytes:
    path = key[0].encode("utf-8", "surrogateescape")
    head = _HEAD.pack(_MAGIC, VERSION, len(path), key[1], key[2], key[3], rows) + path
    return head + b"\0" * (-len(head) % _ALIGN)


def load(key: Key) -> CandleColumns | None:
    """`key`'s entry, mapped read-only, or None where there is none or it does not hold `key`'s
    columns whole (another key's, truncated, a foreign file: the caller decodes and replaces it).
    Reading it refreshes its time, which the size bound drops the oldest by."""
    path = entry_path(key)
    try:
        with path.open("rb") as fh:
            mapped = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:  # ValueError: an empty file cannot be mapped
        log.debug("candle cache: cannot map %s (%s)", path, exc)
        return None
    columns = _columns(mapped, key)
    if columns is None:
        log.debug("candle cache: %s does not hold %s whole; decoding it again", path, key[0])
        return None
    with contextlib.suppress(OSError):
        os.utime(path)
    return columns


def _columns(mapped: mmap.mmap, key: Key) -> CandleColumns | None:
    """The columns of an entry's mapping, or None where its header is not `key`'s or its length
    is not the header's rows."""
    if len(mapped) < _HEAD.size:
        return None
    rows = _HEAD.unpack_from(mapped)[-1]
    head = _header(key, rows)  # the whole header as `key`'s would be, path included
    if mapped[: len(head)] != head:
        return None
    if len(mapped) != len(head) + 8 * len(COLUMNS) * rows:
        return None
    arrays = {
        name: np.frombuffer(mapped, dtype, count=rows, offset=len(head) + 8 * rows * i)
        for i, (name, dtype) in enumerate(zip(COLUMNS, DTYPES, strict=True))
    }
    return CandleColumns(arrays)


def save(key: Key, arrays: Sequence[npt.NDArray[Any]]) -> None:
    """Keep the six columns `arrays` (int64 open times, float64 OHLCV, one length) as `key`'s
    entry, then hold the folder under `MAX_BYTES`. Any OSError (no folder can be made, not
    writable, full) leaves things as they were: a debug line, no entry."""
    target = entry_path(key)
    name: str | None = None
    try:
        target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, name = tempfile.mkstemp(prefix=".tmp-", suffix=SUFFIX, dir=target.parent)
        with os.fdopen(fd, "wb") as fh:
            fh.write(_header(key, len(arrays[0])))
            for array, dtype in zip(arrays, DTYPES, strict=True):
                fh.write(np.ascontiguousarray(array, dtype).data)
        os.replace(name, target)
        name = None
        prune(target.parent, MAX_BYTES)
    except OSError as exc:
        log.debug("candle cache: cannot keep %s (%s); it is decoded each time", key[0], exc)
    finally:
        if name is not None:
            with contextlib.suppress(OSError):
                os.unlink(name)


def prune(where: Path, max_bytes: int) -> None:
    """Remove the least recently used files of `where` until they hold at most `max_bytes`
    together. Another process pruning or writing at the same time is no error: a file gone
    already is skipped, and a mapped entry stays readable to whoever mapped it."""
    found = []
    for entry in os.scandir(where):
        with contextlib.suppress(OSError):
            st = entry.stat(follow_symlinks=False)
            found.append((st.st_mtime_ns, st.st_size, entry.path))
    total = sum(size for _, size, _ in found)
    for _, size, path in sorted(found):
        if total <= max_bytes:
            break
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        total -= size
