"""Refusals a human must fix, through the real ccxt client and CcxtGateway against the sim.

A key that cannot trade (-2015, which ccxt raises as DDoSProtection once a private call has
worked) and a clock the exchange does not share (-1021). The sim runs at x1 from the wall's
time, as `hotcoin sim-exchange` does, and the gateway keeps its time (`ExchangeClock`), read
from its `/api/v3/time` as `hotcoin run` reads it: a measured clock offset is the skew the sim
was given, whether it was given before the gateway started or after.
"""

from __future__ import annotations

import asyncio
import re
import time
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
from engine.runtime.session import server_time_ms
from engine.sim.server import FaultPlan, SimExchangeServer
from tests.kit.domain import make_intent
from tests.kit.sim_exchange import API_KEY, SECRET, FakeMarketSource, running_sim_exchange
from tests.kit.waiting import eventually

SKEW_MS = 8_000  # beyond the 5,000 ms recvWindow: every signed request is refused until resynced


@pytest.fixture
def faults() -> FaultPlan | None:
    """The sim's faults from its start (a test overrides this fixture to start with some)."""
    return None


@pytest.fixture
def speed() -> float:
    """The sim's pace (a test overrides this fixture to run it paced)."""
    return 1.0


@pytest.fixture
async def sim(faults: FaultPlan | None, speed: float) -> AsyncIterator[SimExchangeServer]:
    source = FakeMarketSource(start_ms=time.time_ns() // 1_000_000)
    async with running_sim_exchange(source, speed=speed, faults=faults) as server:
        yield server


Client = Callable[[ExchangeSection], EndpointBinance]
Factory = Callable[..., tuple[CcxtGateway, list[GatewayNotice]]]


@pytest.fixture
async def make_gateway(sim: SimExchangeServer, speed: float) -> AsyncIterator[Factory]:
    made: list[CcxtGateway] = []
    exchange_ms = await server_time_ms(sim.base_url, 5_000)  # the engine's clock is read from here

    def factory(client: Client = build_client) -> tuple[CcxtGateway, list[GatewayNotice]]:
        section = ExchangeSection(
            endpoint=sim.base_url, api_key=SecretStr(API_KEY), api_secret=SecretStr(SECRET),
            recv_window_ms=5_000, stale_stream_s=0.0,
        )
        notices: list[GatewayNotice] = []
        clock = ExchangeClock(exchange_ms, speed)
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


@pytest.mark.parametrize("faults", [FaultPlan(clock_skew_ms=SKEW_MS)])
async def test_a_clock_skew_present_before_the_gateway_started_is_measured_and_signed_with(
    make_gateway: Factory, sim: SimExchangeServer
) -> None:
    """The exchange's clock is SKEW_MS ahead of ours from the start, so the gateway's clock
    (read from its time) is too. The offset ccxt signs with is measured against the clock ccxt
    signs with (the wall's), not against the exchange's own: that read +0 ms, set no offset, and
    every signed call was refused after the resync ("its clock reads +1 ms from ours"). And the
    exchange stamps its market data on the same clock as its time: fresh, not SKEW_MS stale."""
    gateway, notices = make_gateway()
    await gateway.load_markets()
    order = await gateway.create_order(_buy("hc-skew-at-start"))
    assert order.client_order_id == "hc-skew-at-start"
    rest = gateway.health()[REST_STREAM]
    assert rest.clock_offset_ms is not None and abs(rest.clock_offset_ms - SKEW_MS) < 500
    assert rest.fault is None and not notices
    await gateway.fetch_balance()  # signed, first time right
    batch = await gateway.fetch_tickers()
    assert abs(int(batch.event_ms.max()) - gateway._clock.now_ms()) < 1_000


@pytest.mark.parametrize("speed", [10.0])
async def test_a_paced_exchange_is_measured_from_its_first_reading_though_our_clock_followed_it(
    make_gateway: Factory, sim: SimExchangeServer
) -> None:
    """At x10 the exchange's time is simulated (no wall clock matches it) while it judges
    signed requests on the wall clock plus its skew: all its time can tell is how far its clock
    moved since we first read it. A skew past a minute moves its event times out of our clock's
    reach, so the feed follows it forward (`ExchangeClock.resync`) before any order is sent;
    measured against the clock as it then stood, the skew read 0."""
    gateway, _ = make_gateway()
    await gateway.load_markets()
    clock = gateway._clock
    assert isinstance(clock, ExchangeClock)
    skew_ms = 120_000
    sim.faults.update({"clock_skew_ms": skew_ms})
    stepped = clock.reanchor(await server_time_ms(sim.base_url, 5_000))  # as the feed does
    assert abs(stepped - skew_ms) < 2_000
    order = await gateway.create_order(_buy("hc-skew-paced"))
    assert order.client_order_id == "hc-skew-paced"
    rest = gateway.health()[REST_STREAM]
    assert rest.clock_offset_ms is not None and abs(rest.clock_offset_ms - skew_ms) < 1_000


class _ClockOf(EndpointBinance):  # type: ignore[misc]
    """A client told a time `reported_skew_ms` from the wall's (the clock ccxt signs with) by
    /api/v3/time, whatever the exchange's recvWindow check runs on: the resync cannot mend the
    refusals."""

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
        built.reported_skew_ms = reported_ms
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
