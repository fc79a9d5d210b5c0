"""Prometheus metrics of one engine, on a private registry (no process-global state, so two
engines in one test process never collide)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from engine.runtime.snapshot import EngineSnapshot

if TYPE_CHECKING:  # the engine (and every backtest) imports metrics; the HTTP channels stay out
    from engine.ops.notify.dispatcher import ChannelReport


class _CountsCollector(Collector):
    """A counter family read from its owner's own tallies at each scrape: the feed keeps plain
    integers (no metrics import in the market path), and the scrape turns them into samples."""

    def __init__(self, name: str, documentation: str, label: str, counts: Callable[[], Mapping[str, int]]) -> None:
        self._name, self._doc, self._label, self._counts = name, documentation, label, counts

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = CounterMetricFamily(self._name, self._doc, labels=[self._label])
        for key, value in sorted(self._counts().items()):
            family.add_metric([key], value)
        yield family


class _NotifyCollector(Collector):
    """The notification channels' queues and counters, read from the dispatcher at each scrape."""

    def __init__(self, channels: Callable[[], Mapping[str, ChannelReport]]) -> None:
        self._channels = channels

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        channels = sorted(self._channels().items())
        queued = GaugeMetricFamily("hotcoin_notify_queue_depth", "Notifications waiting per channel", labels=["channel"])
        outcomes = CounterMetricFamily(
            "hotcoin_notifications", "Notifications by channel and outcome (sent, failed, dropped)", labels=["channel", "outcome"]
        )
        retries = CounterMetricFamily("hotcoin_notify_retries", "Delivery attempts retried per channel", labels=["channel"])
        failing = GaugeMetricFamily(
            "hotcoin_notify_failing_attempts", "Delivery attempts failed in a row (0: the last went through)", labels=["channel"]
        )
        unreported = GaugeMetricFamily(
            "hotcoin_notify_unreported_losses",
            "Notifications lost (dropped, given up, unconfirmed) not yet said in a delivered one",
            labels=["channel"],
        )
        for name, r in channels:
            queued.add_metric([name], r.queued)
            unreported.add_metric([name], r.unreported)
            for outcome, count in (("sent", r.sent), ("failed", r.failed), ("dropped", r.dropped)):
                outcomes.add_metric([name, outcome], count)
            retries.add_metric([name], r.retries)
            failing.add_metric([name], r.failing)
        yield from (queued, outcomes, retries, failing, unreported)


STATE_CODES = {"tradeable": 0, "degraded": 1, "blocked": 2}
_LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class EngineMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.signals = Counter("hotcoin_signals", "Signal evaluations by decision", ["decision"], registry=r)
        self.orders = Counter("hotcoin_orders", "Orders by result", ["result"], registry=r)
        # Read from the engine's snapshot, and exported only from the first one on: before it (a
        # restart's first second or so) they read 0 equity, 0 positions and "tradeable", and every
        # alert on equity falling or positions at 0 fired at each restart.
        self.pool_size = Gauge("hotcoin_pool_size", "Candidates in the pool", registry=None)
        self.equity = Gauge("hotcoin_equity_quote", "Equity in the quote asset", registry=None)
        self.day_pnl = Gauge("hotcoin_day_pnl_quote", "PnL since 00:00 UTC", registry=None)
        self.unrealised = Gauge("hotcoin_unrealised_pnl_quote", "Unrealised PnL of open positions, net of their entry fees", registry=None)
        self.exposure = Gauge("hotcoin_exposure_quote", "Open positions valued at current prices", registry=None)
        self.positions = Gauge("hotcoin_positions", "Open positions", registry=None)
        self.engine_state = Gauge("hotcoin_engine_state", "0 tradeable, 1 degraded, 2 blocked", registry=None)
        self._unexported: tuple[Gauge, ...] = (
            self.pool_size, self.equity, self.day_pnl, self.unrealised, self.exposure, self.positions, self.engine_state,
        )
        self.stream_age = Gauge("hotcoin_stream_age_seconds", "Seconds since a stream's last message", ["stream"], registry=r)
        self.queue_depth = Gauge("hotcoin_queue_depth", "Items waiting in an internal queue", ["queue"], registry=r)
        self.cycle_latency = Histogram(
            "hotcoin_cycle_seconds", "Market batch to decisions done", buckets=_LATENCY_BUCKETS, registry=r
        )
        self.decision_latency = Histogram(
            "hotcoin_decision_seconds", "Market batch to order handed to the broker", buckets=_LATENCY_BUCKETS, registry=r
        )

    def update_from_snapshot(self, snap: EngineSnapshot, now_ms: int | None = None) -> None:
        """The gauges from `snap`; stream ages at `now_ms` (a scrape's now: they go on growing
        when snapshots stop), else at the snapshot's own time (the engine, as it publishes)."""
        self.pool_size.set(len(snap.candidates))
        self.equity.set(snap.totals.equity)
        self.day_pnl.set(snap.totals.day_pnl)
        self.exposure.set(snap.totals.exposure)
        self.positions.set(len(snap.positions))
        self.unrealised.set(sum(p.unrealised_pnl for p in snap.positions))
        self.engine_state.set(STATE_CODES.get(snap.status.state, -1))
        for gauge in self._unexported:
            self.registry.register(gauge)
        self._unexported = ()
        at = snap.ts_ms if now_ms is None else now_ms
        for stream in snap.status.streams:
            if stream.last_message_ms is not None:
                self.stream_age.labels(stream.name).set(max(0.0, (at - stream.last_message_ms) / 1000))

    def count_feed_errors(self, counts: Callable[[], Mapping[str, int]]) -> None:
        """`hotcoin_feed_errors_total{kind}` from `counts()` at every scrape (once per engine)."""
        self.registry.register(
            _CountsCollector("hotcoin_feed_errors", "Market-data errors since start, by kind", "kind", counts)
        )

    def count_discovery(self, counts: Callable[[], Mapping[str, int]]) -> None:
        """`hotcoin_discovery_events_total{kind}` from `counts()` at every scrape (once per engine):
        what discovery and its social sources refused or ran into (a stale post, a missing JSONL
        file, an X rate limit), which otherwise only a debugger would see."""
        self.registry.register(
            _CountsCollector(
                "hotcoin_discovery_events", "Discovery and social-source events since start (posts refused, feed trouble), by kind",
                "kind", counts,
            )
        )

    def count_notifications(self, channels: Callable[[], Mapping[str, ChannelReport]]) -> None:
        """The notification channels' `hotcoin_notify_*` and `hotcoin_notifications_total`
        from `channels()` at every scrape (once per engine)."""
        self.registry.register(_NotifyCollector(channels))

    def set_queue_depths(self, queues: Mapping[str, int]) -> None:
        for name, depth in queues.items():
            self.queue_depth.labels(name).set(depth)

    def render(self) -> bytes:
        return generate_latest(self.registry)
