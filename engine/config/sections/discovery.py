"""Discovery settings: rolling windows, anomaly thresholds, heat weights, filters, pool, sources.

Every number here is a seed, tuned against `bench/bench_discovery_quality.py` (simulated pumps
and the real April 2021 candles). The descriptions are the documentation of record.
"""

from __future__ import annotations

from pydantic import Field, SecretStr, ValidationInfo, field_validator, model_validator

from engine.config.sections.base import Secret, Section

DEFAULT_STABLECOINS: tuple[str, ...] = (
    "USDT", "USDC", "BUSD", "TUSD", "FDUSD", "USDP", "DAI", "PAX", "USDD", "UST", "USTC",
    "SUSD", "GUSD", "PYUSD", "USD1", "EURI", "AEUR", "EURC", "XUSD", "USDE", "BFUSD",
)  # fmt: skip
DEFAULT_FIAT: tuple[str, ...] = (
    "EUR", "GBP", "AUD", "TRY", "BRL", "RUB", "UAH", "NGN", "ZAR", "IDRT", "BIDR", "BVND",
    "ARS", "JPY", "PLN", "RON", "MXN", "COP", "CZK", "USD",
)  # fmt: skip
DEFAULT_LEVERAGED_SUFFIXES: tuple[str, ...] = ("UP", "DOWN", "BULL", "BEAR")


class WindowsSection(Section):
    capacity: int = Field(
        4096, ge=16, le=65536, description="Most symbols tracked at once (fixed-size arrays; extra symbols are counted and skipped)."
    )
    slot_ms: int = Field(
        15_000, ge=1000, description="Resolution of the rolling history: one price/volume sample per symbol per slot."
    )
    history_slots: int = Field(
        256,
        ge=16,
        le=4096,
        description="Slots kept per symbol (history = slot_ms x history_slots); must cover the 60 min return.",
    )
    stale_after_ms: int = Field(
        600_000, ge=1000, description="A symbol with no ticker for this long is dropped from the windows."
    )
    cleanup_interval_ms: int = Field(60_000, ge=1000, description="How often stale symbols are swept.")
    volume_reset_drop: float = Field(
        0.5,
        gt=0,
        lt=1,
        description="A fall of the 24 h quote volume by more than this fraction in one update is a daily "
        "reset of the exchange's counter, never a volume figure (the interval's volume is unknown).",
    )
    volume_bucket_ms: int = Field(
        300_000,
        ge=1000,
        description="Bucket of the 24 h ring of our own volume estimates: the volume leaving the exchange's "
        "24 h window is read from the bucket 24 h back (must divide a day; 1 min buckets cost 4x the memory of 5 min).",
    )
    volume_gap_slots: int = Field(
        3,
        ge=1,
        description="A symbol silent for more than this many slots gets no volume for the update that ends "
        "the silence (its 24 h diff spans too long a time to attribute).",
    )

    @model_validator(mode="after")
    def _covers_an_hour(self) -> WindowsSection:
        if self.slot_ms * (self.history_slots - 1) < 3_600_000:
            raise ValueError(
                f"windows: slot_ms x (history_slots - 1) = {self.slot_ms * (self.history_slots - 1)} ms "
                "is shorter than the 60 min return window; raise history_slots or slot_ms"
            )
        if 86_400_000 % self.volume_bucket_ms:
            raise ValueError(f"windows.volume_bucket_ms={self.volume_bucket_ms} must divide a day (86400000)")
        if 60_000 % self.slot_ms:
            raise ValueError(f"windows.slot_ms={self.slot_ms} must divide 60000 (the 1 min return)")
        return self


class AnomalySection(Section):
    min_history_slots: int = Field(
        20, ge=5, description="Slots of own history a symbol needs before its z-scores count."
    )
    baseline_refresh_batches: int = Field(
        60,
        ge=1,
        description="The robust baselines (median/MAD) of all symbols are recomputed over this many "
        "batches, a slice per batch, so no single batch pays for all of them.",
    )
    sigma_floor: float = Field(
        0.0005, gt=0, description="Smallest per-slot return deviation (log units) used in a z-score: flat coins do not divide by zero."
    )
    volume_sigma_floor: float = Field(0.25, gt=0, description="Smallest deviation of log slot volume used in a z-score.")
    surge_window_ms: int = Field(60_000, ge=1000, description="Recent volume is summed over this window for the surge ratio.")
    momentum_no_trade_ms: int = Field(
        300_000,
        ge=1000,
        description="A symbol no fresh ticker (a trade) reached for this long scores no momentum: a halted coin, "
        "or one gone from the ticker stream, keeps its last rise from the 60 min low for an hour and stayed "
        "at the top of the pool with nothing trading.",
    )


class HeatSection(Section):
    """heat = 100 x min(1, sum(weight_i x component_i)); each component is in 0..1.

    A weight is how much of the full scale its component can supply on its own, so the weights
    need not sum to 1: momentum and volume alone reach 95, listings and social add on top.
    """

    w_momentum: float = Field(0.6, ge=0, description="Weight of momentum: the larger of the return z-score part and the rise from the 60 min low (runup_full).")
    w_volume_surge: float = Field(0.35, ge=0, description="Weight of the volume surge (saturating function of the volume z-score, price not falling).")
    w_listing_freshness: float = Field(0.55, ge=0, description="Weight of listing freshness (exp(-age / listing_tau_days)).")
    w_social_velocity: float = Field(0.2, ge=0, description="Weight of social mention velocity (mentions vs own baseline).")
    w_social_sentiment: float = Field(0.05, ge=0, description="Weight of positive social sentiment (only where mentioned).")
    w_rank_acceleration: float = Field(
        0.1,
        ge=0,
        description="Weight of rank acceleration: the climb in the market-wide ranking since the start of the "
        "previous bar (`pool.bar_ms`; the full ranking is taken once a bar).",
    )
    momentum_z_half: float = Field(8.0, gt=0, description="Return z-score at which momentum is 0.5.")
    momentum_min_return: float = Field(
        0.02, ge=0, description="Momentum is scaled by min(1, best return / this): a big z on a tiny move is not hot."
    )
    runup_full: float = Field(
        0.10,
        gt=0,
        description="Rise from the 60 min low at which momentum is full (1); below it momentum grows "
        "linearly. Pumps are detected early by their rise, whatever the coin's own volatility.",
    )
    volume_z_half: float = Field(6.0, gt=0, description="Volume z-score at which the volume component is 0.5.")
    listing_tau_days: float = Field(1.0, gt=0, description="Listing freshness decays as exp(-age_days / this).")
    social_velocity_half: float = Field(3.0, gt=0, description="Mention-rate ratio over baseline at which social velocity is 0.5.")


class FiltersSection(Section):
    min_quote_volume_24h: float = Field(
        2_000_000.0, ge=0, description="Least 24 h quote volume (in the quote asset) a candidate needs."
    )
    new_listing_liquidity_frac: float = Field(
        0.10,
        gt=0,
        le=1,
        description="A listing younger than new_listing_days needs only this fraction of the minimum volume "
        "(its 24 h figure is still filling up).",
    )
    new_listing_days: float = Field(1.0, gt=0, description="Age below which a coin counts as a new listing for the volume filter.")
    liquidity_exit_frac: float = Field(
        0.9,
        gt=0,
        le=1,
        description="Exit band of the volume filter: a pool member leaves for low volume only below this fraction "
        "of its minimum (min_quote_volume_24h, or the new-listing one), while a newcomer needs the whole minimum. "
        "Without it a hot coin whose 24 h volume hovers at the minimum entered and left the pool every minute, "
        "each time under a new trace.",
    )
    stablecoins: tuple[str, ...] = Field(DEFAULT_STABLECOINS, description="Base assets that are stablecoins (excluded).")
    fiat: tuple[str, ...] = Field(DEFAULT_FIAT, description="Base assets that are fiat currencies (excluded).")
    leveraged_suffixes: tuple[str, ...] = Field(
        DEFAULT_LEVERAGED_SUFFIXES,
        description="Base-asset suffixes of leveraged tokens (BTCUP, ETHBEAR); a base counts as leveraged only "
        "when the part before the suffix is itself a known base, so JUP or SYRUP are not.",
    )
    blacklist: tuple[str, ...] = Field((), description="Base assets or symbols (PEPE or PEPE/USDT) never to be candidates.")


class PoolSection(Section):
    size: int = Field(20, ge=1, le=500, description="Most candidates in the pool (top-N by heat).")
    min_heat: float = Field(55.0, ge=0, le=100, description="Heat a symbol needs to enter the pool.")
    ttl_ms: int = Field(600_000, ge=0, description="A member that stops qualifying leaves after this long.")
    history_len: int = Field(120, ge=1, description="Heat samples kept per candidate (bounded).")
    bar_ms: int = Field(
        60_000,
        ge=1000,
        description="Bar of discovery, for two things: heat's rank acceleration (the market-wide ranking is "
        "taken once a bar and a climb counts from the previous bar's, so this changes heat and trades), and "
        "the journal (a candidate_snapshot at most once per symbol per bar, for pool members and filter-"
        "rejected symbols with heat >= min_heat; one trace_id per symbol per bar).",
    )


class ListingsSection(Section):
    known_listings_ms: dict[str, int] = Field(
        default_factory=dict,
        description="Listing time (epoch ms) of symbols present at the first market load, e.g. "
        "{'PEPE/USDT': 1683100800000}; others present then have unknown (old) age.",
    )
    forget_after_ms: int = Field(
        7 * 86_400_000, ge=0, description="A symbol gone from market info is forgotten after this long (then a return is a new listing)."
    )
    announcement_url: str = Field(
        "https://www.binance.com/bapi/composite/v1/public/cms/article/list/query?type=1&catalogId=48&pageNo=1&pageSize=20",
        description="Binance 'New Cryptocurrency Listing' announcement JSON.",
    )
    announcement_poll_ms: int = Field(30_000, ge=1000, description="Announcement poll interval.")
    announcement_stop_words: tuple[str, ...] = Field(
        (
            "USDT", "USDC", "FDUSD", "BUSD", "TUSD", "BNB", "BTC", "ETH", "USD", "EUR", "UTC", "API",
            "NFT", "AI", "DEFI", "BETA", "NEW", "TBA", "APR", "APY", "VIP", "KYC", "FAQ", "ETF", "IEO",
            "HODLER", "SEED", "UPDATE", "UPDATED", "SPOT", "FUTURES", "MARGIN", "TGE", "EU", "USDⓈ",
        ),
        description="Words in parentheses that are never a listed coin's symbol.",
    )  # fmt: skip
    announcement_retention_ms: int = Field(
        14 * 86_400_000, ge=60_000, description="Seen article ids are remembered this long (then forgotten)."
    )
    announcement_freshness_ms: int = Field(
        3 * 86_400_000, ge=0, description="An announced, not yet trading coin counts as fresh for this long."
    )


WEBHOOK_TOKEN_MIN = 16  # characters of discovery.social.webhook_token


class SocialSection(Section):
    x_base_url: str = Field("https://api.twitter.com", description="X (Twitter) API base URL.")
    x_bearer_token: Secret | None = Field(None, description="X API bearer token (secrets file or env only); None disables X.")
    x_query: str = Field(
        "(binance OR $BNB) (listing OR pump OR moon) -is:retweet", description="X recent-search query."
    )
    x_poll_ms: int = Field(60_000, ge=1000, description="X poll interval.")
    square_url: str | None = Field(None, description="Binance Square feed JSON URL; None disables it.")
    square_poll_ms: int = Field(60_000, ge=1000, description="Binance Square poll interval.")
    jsonl_path: str | None = Field(None, description="JSONL file of posts to tail (one JSON object a line); None disables it.")
    jsonl_poll_ms: int = Field(1000, ge=10, description="How often the JSONL file is checked for new lines.")
    webhook_token: Secret | None = Field(
        None,
        description="Shared token the post webhook requires as `Authorization: Bearer <token>` (secrets file or env only).",
    )
    webhook_port: int | None = Field(
        None, ge=0, le=65535, description="Port of the post webhook on 127.0.0.1 (needs webhook_token); None disables it."
    )
    kol_followers: int = Field(10_000, ge=0, description="Authors with more followers than this are KOLs.")
    kol_weight: float = Field(3.0, ge=1, description="A KOL's mention counts this many times.")
    window_ms: int = Field(300_000, ge=1000, description="Mention velocity window.")
    baseline_ms: int = Field(3_600_000, ge=1000, description="Baseline span for the mention rate (older mentions are dropped).")
    min_mentions: float = Field(3.0, ge=0, description="Weighted mentions a symbol needs in the window before velocity counts.")

    @field_validator("webhook_token")
    @classmethod
    def _webhook_token_is_long(cls, token: SecretStr | None) -> SecretStr | None:
        """An empty token crashed the start with a raw ValueError (the webhook refuses one), and a
        short one is guessed: both are refused at load, naming the setting."""
        if token is not None and len(token.get_secret_value().strip()) < WEBHOOK_TOKEN_MIN:
            raise ValueError(
                f"is {'empty' if not token.get_secret_value().strip() else 'too short'}: the post webhook's token must be at least "
                f"{WEBHOOK_TOKEN_MIN} characters (e.g. `python -c 'import secrets; print(secrets.token_urlsafe(24))'`)"
            )
        return token

    @field_validator("webhook_port")
    @classmethod
    def _webhook_has_a_token(cls, port: int | None, info: ValidationInfo) -> int | None:
        """Refused here, before anything starts: without a token any local user, or any web page
        (a text/plain POST needs no CORS preflight), could post fake buzz into the heat score.
        (A token refused as too short is not in `info.data`: its own error says so.)"""
        if port is not None and "webhook_token" in info.data and info.data["webhook_token"] is None:
            raise ValueError(
                "the post webhook needs discovery.social.webhook_token, or any local user or web page can post to it: "
                'put webhook_token = "<a long random string>" under [discovery.social] in the secrets file '
                "(chmod 600), or set HOTCOIN_DISCOVERY__SOCIAL__WEBHOOK_TOKEN; senders pass it as "
                "`Authorization: Bearer <token>`. Or unset webhook_port"
            )
        return port


class DiscoverySection(Section):
    windows: WindowsSection = Field(default_factory=WindowsSection)
    anomaly: AnomalySection = Field(default_factory=AnomalySection)
    heat: HeatSection = Field(default_factory=HeatSection)
    filters: FiltersSection = Field(default_factory=FiltersSection)
    pool: PoolSection = Field(default_factory=PoolSection)
    listings: ListingsSection = Field(default_factory=ListingsSection)
    social: SocialSection = Field(default_factory=SocialSection)
