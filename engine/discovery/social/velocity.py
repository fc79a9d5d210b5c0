"""Mention velocity per coin: how much more it is talked about now than usual, and how warmly.

Each mention weighs 1, or `kol_weight` when its author has more than `kol_followers` followers.
For each coin:
    window   = weighted mentions in the last `window_ms`
    baseline = weighted mentions in the `baseline_ms` before that, per window_ms (at least 1)
    velocity = window / baseline, or 0 while window < `min_mentions`
so a coin nobody mentioned that suddenly gets ten KOL posts scores high, and a coin always
talked about does not. Sentiment is the weighted mean lexicon score of the window's mentions.
Mentions older than `baseline_ms + window_ms` are dropped and silent coins forgotten, so the
state stays as small as the chatter; repeated post ids (sources overlap, polls repeat) count once.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Iterable
from dataclasses import dataclass

from engine.config.sections.discovery import SocialSection
from engine.discovery.social.sentiment import LexiconSentiment
from engine.discovery.social.source import SocialPost


@dataclass(frozen=True, slots=True)
class SocialScore:
    velocity: float
    mentions: float  # weighted, in the window
    sentiment: float  # -1..1


class MentionVelocity:
    def __init__(self, cfg: SocialSection, scorer: LexiconSentiment | None = None) -> None:
        self.cfg = cfg
        self.scorer = scorer or LexiconSentiment()
        self._mentions: dict[str, deque[tuple[int, float, float]]] = {}  # base -> (ts, weight, sentiment)
        self._seen: dict[tuple[str, str], int] = {}
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

    def add(self, posts: Iterable[SocialPost], now_ms: int) -> int:
        """Record posts; returns how many mentions were added. Future, stale and repeated posts are counted and skipped."""
        added = 0
        oldest = now_ms - self.horizon_ms
        for post in posts:
            key = (post.source, post.post_id)
            if key in self._seen:
                self.counters["duplicate_post"] += 1
                continue
            if post.ts_ms > now_ms + 60_000:
                self.counters["future_post"] += 1
                continue
            if post.ts_ms < oldest:
                self.counters["stale_post"] += 1
                continue
            if not post.symbols:
                self.counters["post_without_symbol"] += 1
                continue
            self._seen[key] = post.ts_ms
            weight = self.cfg.kol_weight if post.followers > self.cfg.kol_followers else 1.0
            sentiment = self.scorer.score(post.text).score
            for base in post.symbols:
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
