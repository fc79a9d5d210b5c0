"""Mention velocity per coin: how much more it is talked about now than usual, and how warmly.

Each mention weighs 1, or `kol_weight` when its author has more than `kol_followers` followers.
For each coin:
    window   = weighted mentions in the last `window_ms`
    baseline = weighted mentions in the `baseline_ms` before that, per window_ms (at least 1)
    velocity = window / baseline, or 0 while window < `min_mentions`
so a coin nobody mentioned that suddenly gets ten KOL posts scores high, and a coin always
talked about does not. Sentiment is the weighted mean lexicon score of the window's mentions.
Mentions older than `baseline_ms + window_ms` are dropped and silent coins forgotten, so the
state stays as small as the chatter.

A post counts once. Its key is its `post_id` alone, not the feed that carried it: sources
overlap (the same X post relayed through the JSONL file and the webhook, polls repeat) and a
sender must not make one post count again by naming another source. Ids are taken as the
origin network's own (X and Binance Square ids are long numbers that do not collide); a sender
relaying posts from several networks of its own should prefix them ("tg:123").

Only coins the exchange lists count: a post's candidate tags (`extract_cashtags`) go through
`resolve` (discovery's known bases, `resolve_base`), and a post naming none is refused as
`unknown_symbol`, so "$100" or a typo never builds a mention history. `screen` says why a post
would not count, the same verdict `add` applies, so the webhook can answer it to the sender.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from engine.config.sections.discovery import SocialSection
from engine.discovery.social.sentiment import LexiconSentiment
from engine.discovery.social.source import Refusal, SocialPost


@dataclass(frozen=True, slots=True)
class SocialScore:
    velocity: float
    mentions: float  # weighted, in the window
    sentiment: float  # -1..1


FUTURE_SLACK_MS = 60_000  # a sender's clock may run a little ahead of ours
EPOCH_S_MAX = 100_000_000_000  # a ts_ms below this (before 1973) is epoch seconds sent as milliseconds


class MentionVelocity:
    def __init__(
        self, cfg: SocialSection, scorer: LexiconSentiment | None = None, resolve: Callable[[str], str | None] | None = None
    ) -> None:
        """`resolve` maps a candidate tag to the known base it names, or None (module docstring);
        without one every tag is taken as a base."""
        self.cfg = cfg
        self.scorer = scorer or LexiconSentiment()
        self.resolve: Callable[[str], str | None] = resolve or (lambda tag: tag)
        self._mentions: dict[str, deque[tuple[int, float, float]]] = {}  # base -> (ts, weight, sentiment)
        self._seen: dict[str, int] = {}  # post id -> its ts
        self.counters: Counter[str] = Counter()

    def __len__(self) -> int:
        return len(self._mentions)

    @property
    def idle(self) -> bool:
        """Nothing remembered: `scores` would forget nothing and score no coin."""
        return not self._mentions and not self._seen

    @property
    def horizon_ms(self) -> int:
        return self.cfg.baseline_ms + self.cfg.window_ms

    def screen(self, post: SocialPost, now_ms: int) -> tuple[str, ...] | Refusal:
        """The known bases `post` would add a mention to at `now_ms`, or why it would add none."""
        if post.post_id in self._seen:
            return Refusal("duplicate_post", f"post id {post.post_id!r} was counted already")
        if post.ts_ms > now_ms + FUTURE_SLACK_MS:
            return Refusal(
                "future_post",
                f"ts_ms={post.ts_ms} is {(post.ts_ms - now_ms) / 1000:.0f} s after now ({now_ms}); send the post's own time in epoch milliseconds",
            )
        if post.ts_ms < now_ms - self.horizon_ms:
            hint = (
                "it looks like epoch seconds: ts_ms is epoch milliseconds (seconds * 1000)"
                if post.ts_ms < EPOCH_S_MAX
                else f"posts older than {self.horizon_ms // 1000} s (discovery.social.baseline_ms + window_ms) no longer count"
            )
            return Refusal("stale_post", f"ts_ms={post.ts_ms} is {(now_ms - post.ts_ms) / 1000:.0f} s before now ({now_ms}); {hint}")
        if not post.symbols:
            return Refusal("post_without_symbol", "no coin named: tag it in the text ($PEPE) or list it in \"symbols\"")
        bases: list[str] = []
        for tag in post.symbols:
            base = self.resolve(tag)
            if base is not None and base not in bases:
                bases.append(base)
        if not bases:
            return Refusal("unknown_symbol", f"no coin the exchange lists among {', '.join(post.symbols)}")
        return tuple(bases)

    def add(self, posts: Iterable[SocialPost], now_ms: int) -> int:
        """Record posts; returns how many mentions were added. Refused posts (`screen`: repeated,
        future, stale, naming no known coin) are counted by reason and skipped."""
        added = 0
        for post in posts:
            bases = self.screen(post, now_ms)
            if isinstance(bases, Refusal):
                self.counters[bases.reason] += 1
                continue
            self._seen[post.post_id] = post.ts_ms
            weight = self.cfg.kol_weight if post.followers > self.cfg.kol_followers else 1.0
            sentiment = self.scorer.score(post.text).score
            for base in bases:
                q = self._mentions.setdefault(base, deque())
                q.append((post.ts_ms, weight, sentiment))
                added += 1
        self.counters["mentions"] += added
        return added

    def cleanup(self, now_ms: int) -> None:
        oldest = now_ms - self.horizon_ms
        for base in list(self._mentions):
            q = self._mentions[base]
            kept = deque(m for m in q if m[0] >= oldest) if q and min(m[0] for m in q) < oldest else q
            if kept:
                self._mentions[base] = kept
            else:
                del self._mentions[base]
                self.counters["forgotten_symbols"] += 1
        for key in [k for k, t in self._seen.items() if t < oldest]:
            del self._seen[key]

    def scores(self, now_ms: int) -> dict[str, SocialScore]:
        """Velocity and sentiment of every coin mentioned recently (after dropping old mentions)."""
        self.cleanup(now_ms)
        cfg = self.cfg
        start = now_ms - cfg.window_ms
        windows_in_baseline = cfg.baseline_ms / cfg.window_ms
        out: dict[str, SocialScore] = {}
        for base, q in self._mentions.items():
            recent = base_w = sent = 0.0
            for ts, w, s in q:
                if ts > now_ms:
                    continue
                if ts > start:
                    recent += w
                    sent += w * s
                else:
                    base_w += w
            baseline_rate = max(base_w / windows_in_baseline, 1.0)
            velocity = recent / baseline_rate if recent >= cfg.min_mentions else 0.0
            out[base] = SocialScore(velocity, recent, sent / recent if recent else 0.0)
        return out
