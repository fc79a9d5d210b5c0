"""Idempotent client order ids: the same (trace, purpose, leg) always names the same order.

Binance's `newClientOrderId` takes at most 36 characters of `[.A-Za-z0-9:/_-]`. Ours read
`hc-<16 hex of trace>-<purpose letter><leg>`, e.g. `hc-0123456789abcdef-e1`: a retry of the same
intent reuses the id, and an order of unknown outcome can be looked up by the id we already know.

The exchange does not stop a second order: Binance refuses a duplicate id only while the first
order is open, so a market order (filled at once) or a finished limit can be sent again under
the same id. What prevents it is `OrderRouter`'s guard of sent ids, seeded at restart from the
journal's order attempts (`OrderRouter.remember`), and the broker's own duplicate check.
"""

from __future__ import annotations

import hashlib
import re

from engine.domain import OrderPurpose
from engine.errors import NonRetryableOrderError

PREFIX = "hc"
MAX_LEN = 36
ALLOWED = re.compile(r"^[.A-Za-z0-9:/_-]{1,36}$")
_TRACE = re.compile(r"^[0-9a-f]{16}$")

PURPOSE_CODE: dict[OrderPurpose, str] = {
    OrderPurpose.ENTRY: "e",
    OrderPurpose.TAKE_PROFIT: "t",
    OrderPurpose.STOP_LOSS: "s",
    OrderPurpose.TRAILING_STOP: "r",
    OrderPurpose.MAX_HOLD: "m",
    OrderPurpose.SIGNAL_EXIT: "x",
    OrderPurpose.CLOSE_ALL: "c",
}
_CODE_PURPOSE = {code: purpose for purpose, code in PURPOSE_CODE.items()}
_PARSE = re.compile(rf"^{PREFIX}-([0-9a-f]{{16}})-([{''.join(_CODE_PURPOSE)}])(\d{{1,6}})$")


def _trace_key(trace_id: str) -> str:
    """A trace id as 16 hex chars: `make_trace_id` ids as they are, anything else hashed."""
    if _TRACE.match(trace_id):
        return trace_id
    return hashlib.blake2b(trace_id.encode(), digest_size=8).hexdigest()


def client_order_id(trace_id: str, purpose: OrderPurpose, leg: int = 1) -> str:
    """The client order id of leg `leg` (1-based) of `purpose` in trace `trace_id`."""
    if not 1 <= leg <= 999_999:
        raise NonRetryableOrderError(f"order leg must be 1..999999, got {leg}")
    cid = f"{PREFIX}-{_trace_key(trace_id)}-{PURPOSE_CODE[purpose]}{leg}"
    if len(cid) > MAX_LEN or not ALLOWED.match(cid):  # guards the format against future edits
        raise NonRetryableOrderError(f"client order id {cid!r} breaks Binance's 36-char [.A-Za-z0-9:/_-] rule")
    return cid


def parse_client_order_id(cid: str) -> tuple[str, OrderPurpose, int] | None:
    """(trace key, purpose, leg) of one of our ids; None for orders we did not make."""
    m = _PARSE.match(cid)
    if m is None:
        return None
    return m.group(1), _CODE_PURPOSE[m.group(2)], int(m.group(3))


def is_ours(cid: str) -> bool:
    return parse_client_order_id(cid) is not None
