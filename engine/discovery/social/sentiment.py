"""A lexicon sentiment scorer for crypto chatter, English and Chinese, with negation.

Rules, not a model: it is explainable, instant and good enough to tell "PEPE to the moon" from
"PEPE is a rug". Score = (positive - negative) / (positive + negative) in -1..1, 0 for none.
A term counts the other way when a negation comes shortly before it: up to four English words
earlier ("not bullish", "don't think it will pump"), or a Chinese negator right before the term
("不会暴涨", "没有利好").
"""

from __future__ import annotations

import re
from dataclasses import dataclass

POSITIVE_EN = frozenset(
    {"moon", "mooning", "pump", "pumping", "bullish", "breakout", "rocket", "gem", "buy", "long",
     "rally", "surge", "surging", "soar", "soaring", "ath", "lfg", "send", "sending", "undervalued", "listing"}
)  # fmt: skip
NEGATIVE_EN = frozenset(
    {"dump", "dumping", "scam", "rug", "rugpull", "rugged", "bearish", "sell", "short", "crash",
     "crashing", "exit", "hack", "hacked", "fraud", "ponzi", "dead", "overvalued", "delist", "delisting"}
)  # fmt: skip
POSITIVE_ZH = ("暴涨", "起飞", "利好", "拉盘", "看涨", "看多", "上涨", "突破", "新高", "上币", "抄底", "牛")
NEGATIVE_ZH = ("暴跌", "利空", "跑路", "砸盘", "看跌", "看空", "下跌", "骗局", "割韭菜", "归零", "崩盘", "熊")
NEGATIONS_EN = frozenset({"not", "no", "never", "dont", "don't", "isnt", "isn't", "wont", "won't", "aint", "ain't", "nothing", "without", "cant", "can't", "doesnt", "doesn't"})
NEGATIONS_ZH = ("不会", "不是", "没有", "没", "不", "未", "别", "非", "无")
NEGATION_REACH = 4
_WORD = re.compile(r"[a-z']+")


@dataclass(frozen=True, slots=True)
class SentimentScore:
    score: float  # -1..1
    positive: int
    negative: int


class LexiconSentiment:
    """English word rules plus Chinese substring rules."""

    def score(self, text: str) -> SentimentScore:
        pos, neg = self._english(text.lower())
        zp, zn = self._chinese(text)
        pos += zp
        neg += zn
        total = pos + neg
        return SentimentScore((pos - neg) / total if total else 0.0, pos, neg)

    @staticmethod
    def _english(text: str) -> tuple[int, int]:
        pos = neg = 0
        last_negation = -(NEGATION_REACH + 1)
        for i, word in enumerate(_WORD.findall(text)):
            if word in NEGATIONS_EN:
                last_negation = i
                continue
            polarity = 1 if word in POSITIVE_EN else -1 if word in NEGATIVE_EN else 0
            if not polarity:
                continue
            if i - last_negation <= NEGATION_REACH:
                polarity = -polarity
            if polarity > 0:
                pos += 1
            else:
                neg += 1
        return pos, neg

    @staticmethod
    def _chinese(text: str) -> tuple[int, int]:
        pos = neg = 0
        for terms, polarity in ((POSITIVE_ZH, 1), (NEGATIVE_ZH, -1)):
            for term in terms:
                start = 0
                while (i := text.find(term, start)) >= 0:
                    start = i + len(term)
                    before = text[max(0, i - 2) : i]
                    p = -polarity if any(before.endswith(n) for n in NEGATIONS_ZH) else polarity
                    if p > 0:
                        pos += 1
                    else:
                        neg += 1
        return pos, neg
