"""The recommender's settings: one frozen tree, defaults here and nowhere else.

Sources, lowest to highest: these defaults, the TOML file (`--config`), environment
variables `STB_RECOMMENDER__SECTION__KEY` (e.g. `STB_RECOMMENDER__ALS__FACTORS`,
`STB_RECOMMENDER__SERVE__LISTEN`), command-line flags. Every subcommand (train, serve,
evaluate, feedback) reads the same tree, so a model is trained, evaluated and served with
the same signal definition.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from stbcommon.settings import LogSettings, MetricsSettings
from warehouse.settings import StoreSettings

ENV_PREFIX = "STB_RECOMMENDER"
HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS


@dataclass(frozen=True)
class SignalSettings:
    """How viewing becomes implicit feedback (the same for training, fold-in and evaluation)."""

    history_days: float = 365.0      # training reads views this far back (decay weighs them, no hard cut)
    zap_threshold_s: int = 180       # views shorter than this are zapping: noise, never a positive
    half_life_days: float = 14.0     # a view this old counts half; 0 = no decay
    log_scale: bool = True           # confidence from log1p(decayed watched share) instead of linear
    zap_negatives: bool = False      # contents zapped past (and never watched) as weak explicit negatives
    zap_negative_weight: float = 0.15  # its value: confidence alpha * weight (> 1 to outweigh "unobserved")
    min_strength: float = 1.0        # a household whose strongest decayed content sum is below this
                                     # (thin or old viewing) is scaled up to it; 0 = off

    def validate(self) -> list[str]:
        problems = []
        if self.history_days <= 0:
            problems.append("history_days: must be > 0")
        if not 0 <= self.zap_threshold_s <= 3600:
            problems.append("zap_threshold_s: must be 0..3600")
        if self.half_life_days < 0:
            problems.append("half_life_days: must be >= 0 (0 = no decay)")
        if self.zap_negative_weight <= 0:
            problems.append("zap_negative_weight: must be > 0")
        if self.min_strength < 0:
            problems.append("min_strength: must be >= 0 (0 = off)")
        return problems


@dataclass(frozen=True)
class AlsSettings:
    factors: int = 64
    regularization: float = 0.05
    alpha: float = 10.0              # confidence = alpha * value (implicit's convention)
    iterations: int = 15
    threads: int = 0                 # ALS fit threads, 0 = every core
    seed: int = 42

    def validate(self) -> list[str]:
        problems = []
        if not 1 <= self.factors <= 1024:
            problems.append("factors: must be 1..1024")
        if self.regularization < 0:
            problems.append("regularization: must be >= 0")
        if self.alpha <= 0:
            problems.append("alpha: must be > 0")
        if not 1 <= self.iterations <= 500:
            problems.append("iterations: must be 1..500")
        if self.threads < 0:
            problems.append("threads: must be >= 0")
        return problems


@dataclass(frozen=True)
class DaypartSettings:
    """Dayparts split the day by local hour; each household gets a sub-profile per daypart."""

    # start hours (local), ascending; the default matches UK/EU broadcast practice:
    # night 01-04, morning 04-09, daytime 09-16, afternoon 16-19, prime 19-23, late 23-01
    starts: tuple[int, ...] = (1, 4, 9, 16, 19, 23)
    names: tuple[str, ...] = ("night", "morning", "daytime", "afternoon", "prime", "late")
    utc_offset_minutes: int = 0      # the market's local time
    blend: float = 0.5               # score = (1-blend)*household + blend*daypart sub-profile
    min_watched: float = 2.0         # a sub-profile needs this many programmes' worth (decayed shares)

    def validate(self) -> list[str]:
        problems = []
        if not self.starts or list(self.starts) != sorted(set(self.starts)) \
                or not all(0 <= h <= 23 for h in self.starts):
            problems.append("starts: ascending distinct hours 0..23, at least one")
        if len(self.names) != len(self.starts):
            problems.append("names: one name per start hour")
        if not -14 * 60 <= self.utc_offset_minutes <= 14 * 60:
            problems.append("utc_offset_minutes: must be -840..840")
        if not 0 <= self.blend <= 1:
            problems.append("blend: must be 0..1")
        if self.min_watched <= 0:
            problems.append("min_watched: must be > 0")
        return problems

    def hour_table(self) -> list[int]:
        """Daypart index of each local hour 0..23."""
        table = []
        for hour in range(24):
            below = [i for i, s in enumerate(self.starts) if s <= hour]
            table.append(below[-1] if below else len(self.starts) - 1)
        return table


@dataclass(frozen=True)
class IndexSettings:
    hnsw_min_items: int = 20_000     # exact (flat) inner product below this many contents, HNSW above
    hnsw_m: int = 32
    hnsw_ef_construction: int = 80
    hnsw_ef_search: int = 128

    def validate(self) -> list[str]:
        problems = []
        if self.hnsw_min_items < 1:
            problems.append("hnsw_min_items: must be >= 1")
        if not 4 <= self.hnsw_m <= 128:
            problems.append("hnsw_m: must be 4..128")
        if self.hnsw_ef_construction < self.hnsw_m or self.hnsw_ef_search < 1:
            problems.append("hnsw_ef_construction must be >= hnsw_m and hnsw_ef_search >= 1")
        return problems


@dataclass(frozen=True)
class PopularitySettings:
    days: float = 7.0                # popular-now is computed from this much recent viewing
    half_life_days: float = 3.0

    def validate(self) -> list[str]:
        problems = []
        if self.days <= 0:
            problems.append("days: must be > 0")
        if self.half_life_days < 0:
            problems.append("half_life_days: must be >= 0")
        return problems


@dataclass(frozen=True)
class ModelSettings:
    dir: str = "./models"            # versions/<version>/ plus the CURRENT pointer
    keep_versions: int = 5           # older versions are pruned after a successful publish
    horizon_hours: float = 72.0      # airings snapshotted into the artifact after the data end

    def validate(self) -> list[str]:
        problems = []
        if not self.dir:
            problems.append("dir: required")
        if self.keep_versions < 1:
            problems.append("keep_versions: must be >= 1")
        if self.horizon_hours <= 0:
            problems.append("horizon_hours: must be > 0")
        return problems


@dataclass(frozen=True)
class ServeSettings:
    listen: str = "0.0.0.0:50051"    # HOST:PORT; port 0 picks a free port
    default_k: int = 10
    max_k: int = 100
    default_window_minutes: int = 180
    max_window_minutes: int = 24 * 60
    min_remaining_s: int = 300       # an airing already on must have this much left to be offered
    reload_poll_s: float = 5.0       # how often the CURRENT pointer is checked
    schedule_refresh_s: float = 600.0
    schedule_horizon_hours: float = 48.0
    foldin_interval_s: float = 900.0  # fold viewing newer than the model in; 0 = never
    max_concurrent_rpcs: int = 256
    shutdown_grace_s: float = 5.0
    ready_file: str = ""             # written with HOST:PORT once serving (tests, supervisors)
    processes: int = 1               # serving processes on the one port (SO_REUSEPORT), one mapped model
    batch_max: int = 64              # Recommend calls scored together at most; 1 = each call alone
    batch_max_wait_ms: float = 5.0   # longest a call waits for others while the loop is busy; 0 = one turn
    tls_cert: str = ""               # PEM certificate chain; with tls_key the port is TLS only
    tls_key: str = ""                # PEM private key (mode 0600)
    tls_client_ca: str = ""          # PEM CA: require client certificates signed by it (mTLS)
    tokens_file: str = ""            # `CLIENT_NAME TOKEN [METHOD,...]` a line (mode 0600); "" = no tokens

    def validate(self) -> list[str]:
        problems = []
        host, _, port = self.listen.rpartition(":")
        if not host or not port.isdigit() or not 0 <= int(port) <= 65535:
            problems.append(f"listen: {self.listen!r} is not HOST:PORT")
        if not 1 <= self.default_k <= self.max_k <= 1000:
            problems.append("default_k/max_k: need 1 <= default_k <= max_k <= 1000")
        if not 1 <= self.default_window_minutes <= self.max_window_minutes:
            problems.append("default_window_minutes/max_window_minutes: need 1 <= default <= max")
        if self.min_remaining_s < 0:
            problems.append("min_remaining_s: must be >= 0")
        if self.reload_poll_s <= 0 or self.schedule_refresh_s <= 0:
            problems.append("reload_poll_s and schedule_refresh_s: must be > 0")
        if self.schedule_horizon_hours <= 0:
            problems.append("schedule_horizon_hours: must be > 0")
        if self.foldin_interval_s < 0:
            problems.append("foldin_interval_s: must be >= 0 (0 = off)")
        if self.max_concurrent_rpcs < 1:
            problems.append("max_concurrent_rpcs: must be >= 1")
        if self.shutdown_grace_s <= 0:
            problems.append("shutdown_grace_s: must be > 0")
        if not 1 <= self.processes <= 256:
            problems.append("processes: must be 1..256")
        if not 1 <= self.batch_max <= 1024:
            problems.append("batch_max: must be 1..1024 (1 = no micro-batching)")
        if not 0 <= self.batch_max_wait_ms <= 20:
            problems.append("batch_max_wait_ms: must be 0..20")
        if bool(self.tls_cert) != bool(self.tls_key):
            problems.append("tls_cert and tls_key: set both (TLS) or neither")
        if self.tls_client_ca and not self.tls_cert:
            problems.append("tls_client_ca: needs tls_cert and tls_key")
        return problems


@dataclass(frozen=True)
class EvaluateSettings:
    test_days: float = 7.0           # the test period follows the cut-off
    cutoff_ms: int = 0               # 0 = latest view minus test_days
    window_minutes: int = 180        # at a session start t, rank what airs in [t, t + window]
    session_gap_minutes: int = 30    # a pause this long starts a new viewing session
    max_sessions: int = 20_000       # sampled (seeded) when there are more
    seed: int = 7
    holdout_households: float = 0.1  # left out of training: scored as new households ("new" segment)

    def validate(self) -> list[str]:
        problems = []
        if self.test_days <= 0:
            problems.append("test_days: must be > 0")
        if self.cutoff_ms < 0:
            problems.append("cutoff_ms: must be >= 0")
        if self.window_minutes < 1 or self.session_gap_minutes < 1:
            problems.append("window_minutes and session_gap_minutes: must be >= 1")
        if self.max_sessions < 1:
            problems.append("max_sessions: must be >= 1")
        if not 0 <= self.holdout_households < 1:
            problems.append("holdout_households: must be in [0, 1)")
        return problems




@dataclass(frozen=True)
class RecommenderSettings:
    store: StoreSettings = field(default_factory=StoreSettings)
    model: ModelSettings = field(default_factory=ModelSettings)
    signal: SignalSettings = field(default_factory=SignalSettings)
    als: AlsSettings = field(default_factory=AlsSettings)
    daypart: DaypartSettings = field(default_factory=DaypartSettings)
    index: IndexSettings = field(default_factory=IndexSettings)
    popularity: PopularitySettings = field(default_factory=PopularitySettings)
    serve: ServeSettings = field(default_factory=ServeSettings)
    evaluate: EvaluateSettings = field(default_factory=EvaluateSettings)
    metrics: MetricsSettings = field(default_factory=lambda: MetricsSettings(host="0.0.0.0", port=9465))
    log: LogSettings = field(default_factory=LogSettings)

    def validate(self) -> list[str]:
        problems = []
        if self.serve.schedule_horizon_hours * 60 < self.serve.max_window_minutes:
            problems.append("serve.schedule_horizon_hours: must cover serve.max_window_minutes")
        return problems
