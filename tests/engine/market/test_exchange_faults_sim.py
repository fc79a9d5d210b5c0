"""Refusals a human must fix, through the real ccxt client and CcxtGateway against the sim.

A key that cannot trade (-2015, which ccxt raises as DDoSProtection once a private call has
worked) and a clock the exchange does not share (-1021). The sim runs at x1 and the gateway
keeps its time (`ExchangeClock`), so a measured clock offset is the skew the sim was given.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Callable
from decimal import Decimal
from typing import Any

import pytest
from pydantic import SecretStr

from engine.config.sections.exchange import ExchangeSection
from engine.domain import OrderIntent
from engine.errors import ClockSkewError, ExchangeAuthError
from engine.market.ccxt_client import EndpointBinance, build_client
from engine.market.ccxt_gateway import CcxtGateway
from engine.market.errors import AUTH_FIX
from engine.market.exchange_clock import ExchangeClock
from engine.market.gateway import REST_STREAM, GatewayNotice, NoticeKind
from engine.sim.server import SimExchangeServer
from tests.kit.domain import make_intent
from tests.kit.sim_exchange import API_KEY, SECRET, running_sim_exchange
from tests.kit.waiting import eventually

SKEW_MS = 8_000  # beyond the 5,000 ms recvWindow: every signed request is refused until resynced


@pytest.fixture
async def sim() -> AsyncIterator[SimExchangeServer]:
    async with running_sim_exchange(speed=1.0) as server:
        yield server


Client = Callable[[ExchangeSection], EndpointBinance]
Factory = Callable[..., tuple[CcxtGateway, list[GatewayNotice]]]


@pytest.fixture
async def make_gateway(sim: SimExchangeServer) -> AsyncIterator[Factory]:
    made: list[CcxtGateway] = []

    def factory(client: Client = build_client) -> tuple[CcxtGateway, list[GatewayNotice]]:
        section = ExchangeSection(
            endpoint=sim.base_url, api_key=SecretStr(API_KEY), api_secret=SecretStr(SECRET),
            recv_window_ms=5_000, stale_stream_s=0.0,
        )
        notices: list[GatewayNotice] = []
        clock = ExchangeClock(sim.venue.clock.now_ms(), 1.0)
        gateway = CcxtGateway(section, clock=clock, notify=notices.append, client_factory=lambda: client(section))
        made.append(gateway)
        return gateway, notices

    yield factory
    for gateway in made:
        await gateway.close()


def _buy(cid: str) -> OrderIntent:
    return make_intent("DOGE/USDT", client_order_id=cid, quantity=Decimal("100"), reference_price=0.0)


async def test_a_key_that_cannot_trade_is_an_auth_fault_not_a_rate_limit(
    make_gateway: Factory, sim: SimExchangeServer
) -> None:
    gateway, notices = make_gateway()
    await gateway.fetch_balance()  # a private call that works: ccxt now raises -2015 as DDoSProtection
    sim.faults.update({"key_cannot_trade": True})
    for cid in ("hc-auth-1", "hc-auth-2"):
        with pytest.raises(ExchangeAuthError) as refused:
            await gateway.create_order(_buy(cid))
        assert refused.value.code == -2015
        assert AUTH_FIX in str(refused.value)
    await gateway.fetch_balance()  # reads are not silenced: no rate-limit backoff started
    rest = gateway.health()[REST_STREAM]
    assert rest.rate_limited_until_ms == 0
    assert rest.fault is not None and rest.fault.code == "exchange_auth"
    assert rest.fault.detail == f"{AUTH_FIX} (create_order refused with -2015)"
    assert [n.kind for n in notices] == [NoticeKind.EXCHANGE_FAULT]  # said once, not per refusal

    sim.faults.update({"key_cannot_trade": False})  # the owner fixed the key's permissions
    await gateway.create_order(_buy("hc-auth-3"))
    assert gateway.health()[REST_STREAM].fault is None


async def test_clock_skew_is_resynced_and_the_order_resent_with_its_client_id(
    make_gateway: Factory, sim: SimExchangeServer
) -> None:
    gateway, _ = make_gateway()
    await gateway.load_markets()
    sim.faults.update({"clock_skew_ms": SKEW_MS})
    order = await gateway.create_order(_buy("hc-skew-1"))
    assert order.client_order_id == "hc-skew-1"
    placed = [o for o in sim.venue.engine.account(API_KEY).orders.values() if o.client_order_id == "hc-skew-1"]
    assert len(placed) == 1  # the refused send placed nothing; the resend placed it once
    rest = gateway.health()[REST_STREAM]
    assert rest.clock_offset_ms is not None and abs(rest.clock_offset_ms - SKEW_MS) < 500
    assert rest.fault is None
    # A stream made afterwards signs with the same offset: the WS-API subscription is accepted.
    balances = asyncio.ensure_future(gateway.watch_balance())
    await eventually(lambda: sim.user_api.subscriptions == 1)
    await gateway.create_order(_buy("hc-skew-2"))
    assert "DOGE" in await asyncio.wait_for(balances, 10)


class _ClockOf(EndpointBinance):  # type: ignore[misc]
    """A client told a time `reported_skew_ms` from ours by /api/v3/time, whatever the exchange's
    recvWindow check runs on: the resync cannot mend the refusals."""

    reported_skew_ms = 0

    async def fetch_time(self, params: dict[str, Any] | None = None) -> int:
        return int(self.milliseconds()) + self.reported_skew_ms


@pytest.mark.parametrize(
    ("reported_ms", "said"),
    [
        (0, "the exchange refuses our timestamps though its clock reads [+-]"),
        (-SKEW_MS, "clock skew of -[78],[0-9]{3} ms against the exchange"),
    ],
    ids=["clock-agrees-requests-late", "clock-far-off"],
)
async def test_skew_that_persists_after_the_resync_names_the_fix(
    make_gateway: Factory, sim: SimExchangeServer, reported_ms: int, said: str
) -> None:
    def client(section: ExchangeSection) -> EndpointBinance:
        built = build_client(section)
        built.__class__ = _ClockOf
        built.reported_skew_ms = reported_ms + sim.venue.clock.now_ms() - int(built.milliseconds())
        return built

    gateway, notices = make_gateway(client)
    await gateway.load_markets()
    sim.faults.update({"clock_skew_ms": SKEW_MS})
    with pytest.raises(ClockSkewError) as refused:
        await gateway.create_order(_buy("hc-skew-3"))
    assert re.search(said, str(refused.value))
    assert "sync the system clock (chrony/ntp)" in str(refused.value)
    assert refused.value.skew_ms is not None and abs(refused.value.skew_ms - reported_ms) < 500
    assert not [o for o in sim.venue.engine.account(API_KEY).orders.values() if o.client_order_id == "hc-skew-3"]
    assert gateway._rest_client.options["timeDifference"] == 0  # the offset that did not help is put back
    rest = gateway.health()[REST_STREAM]
    assert rest.fault is not None and rest.fault.code == "clock_skew"
    assert [n.kind for n in notices] == [NoticeKind.EXCHANGE_FAULT]
