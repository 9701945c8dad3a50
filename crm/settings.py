"""The CRM's settings: one frozen tree, defaults here and nowhere else (docs/CRM.md lists them).

Sources, lowest to highest: these defaults, the TOML file (`--config`), environment variables
`STB_CRM__SECTION__KEY` (e.g. `STB_CRM__CREDIT__MIN_VIEW_S`), command-line flags.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from stbcommon.settings import LogSettings
from warehouse.settings import StoreSettings

ENV_PREFIX = "STB_CRM"
MINUTE_MS = 60_000
HOUR_MS = 3_600_000
DAY_MS = 86_400_000

# Columns of an extract that identify a person directly: never stored, reported as dropped.
DIRECT_IDENTIFIERS = ("name", "first_name", "last_name", "surname", "full_name", "phone", "mobile", "telephone",
                      "email", "e_mail", "address", "street", "postcode", "zip", "city", "id_card",
                      "national_id", "passport", "ssn", "tax_id", "iban", "bank_account", "birth_date",
                      "date_of_birth", "dob", "ip", "ip_address", "card_number")


@dataclass(frozen=True)
class ImportSettings:
    """Subscriber (BOSS) extract import."""

    report_rows: int = 100                              # bad rows listed in a refusal
    identifier_columns: tuple[str, ...] = DIRECT_IDENTIFIERS

    def validate(self) -> list[str]:
        return [] if self.report_rows >= 1 else ["report_rows: must be >= 1"]


@dataclass(frozen=True)
class CreditSettings:
    """When viewing counts (ratings and profiles share these)."""

    min_view_s: int = 60               # a view shorter than this is not credited (zapping)
    idle_cut_minutes: int = 240        # a view is cut this long after the household's last interaction
    reach_s: int = 180                 # a household is reached by an airing/channel with this much
    utc_offset_minutes: int = 0        # the market's local time (days and dayparts)

    def validate(self) -> list[str]:
        problems = []
        if not 0 <= self.min_view_s <= 3600:
            problems.append("min_view_s: must be 0..3600")
        if not 1 <= self.idle_cut_minutes <= 24 * 60:
            problems.append("idle_cut_minutes: must be 1..1440")
        if self.reach_s < 1:
            problems.append("reach_s: must be >= 1")
        if not -14 * 60 <= self.utc_offset_minutes <= 14 * 60:
            problems.append("utc_offset_minutes: must be -840..840")
        return problems


@dataclass(frozen=True)
class DaypartSettings:
    """Dayparts by local start hour; the defaults are the simulator's (and UK/EU practice)."""

    starts: tuple[int, ...] = (1, 4, 9, 16, 19, 23)
    names: tuple[str, ...] = ("night", "morning", "daytime", "afternoon", "prime", "late")

    def validate(self) -> list[str]:
        problems = []
        if not self.starts or list(self.starts) != sorted(set(self.starts)) \
                or not all(0 <= h <= 23 for h in self.starts):
            problems.append("starts: ascending distinct hours 0..23, at least one")
        if len(self.names) != len(self.starts) or len(set(self.names)) != len(self.names):
            problems.append("names: one distinct name per start hour")
        return problems

    def hour_table(self) -> list[int]:
        """Daypart index of each local hour 0..23 (hours before the first start: the last daypart)."""
        return [max([i for i, s in enumerate(self.starts) if s <= h], default=len(self.starts) - 1)
                for h in range(24)]


@dataclass(frozen=True)
class ProfileSettings:
    catalogue: str = ""                # tag catalogue TOML; "" = the shipped crm/catalogue.toml
    top_n: int = 3                     # top channels and series kept per household
    shard_households: int = 250_000    # profiles are built this many households per statement

    def validate(self) -> list[str]:
        problems = [] if 1 <= self.top_n <= 20 else ["top_n: must be 1..20"]
        if self.shard_households < 1:
            problems.append("shard_households: must be >= 1")
        return problems


@dataclass(frozen=True)
class ChurnSettings:
    """Churn early warning (crm/churn, docs/CRM.md)."""

    model_dir: str = "churn-models"    # versioned model artifacts (CURRENT + versions/)
    horizon_days: int = 30             # label: the subscription ends within this many days after the feature day
    stride_days: int = 3               # training feature days are this far apart ...
    train_days: int = 18               # ... at most this many of them (the newest calibrates)
    min_history_days: int = 28         # a feature day needs this much event history before it
    test_days: int = 4                 # evaluate: test feature days (the newest with known outcomes); 4, not 2:
                                       # twice the test leavers (AUC's error ~0.014, not ~0.02), still 18
                                       # training days in 150 days of events
    high: float = 0.25                 # band `high` from this calibrated probability ...
    medium: float = 0.08               # ... `medium` from this
    reasons: int = 3                   # reasons kept per household, most important first
    keep_versions: int = 5             # model versions kept on disk

    def validate(self) -> list[str]:
        problems = []
        if not 1 <= self.horizon_days <= 365:
            problems.append("horizon_days: must be 1..365")
        if self.stride_days < 1 or self.train_days < 2 or self.test_days < 1:
            problems.append("stride_days >= 1, train_days >= 2 and test_days >= 1")
        if not 7 <= self.min_history_days <= 56:
            problems.append("min_history_days: must be 7..56 (the features look 8 weeks back)")
        if not 0 < self.medium < self.high < 1:
            problems.append("medium and high: probabilities with 0 < medium < high < 1")
        if not 1 <= self.reasons <= 10 or self.keep_versions < 1:
            problems.append("reasons: 1..10; keep_versions >= 1")
        return problems


@dataclass(frozen=True)
class PrivacySettings:
    """Household ids in output (crm/export_ids.py): pseudonyms keyed by this 0600 file."""

    key_file: str = ""                 # "" = no key: commands list ids only with --identified

    def validate(self) -> list[str]:
        return []


@dataclass(frozen=True)
class CrmSettings:
    store: StoreSettings = field(default_factory=StoreSettings)
    subscribers: ImportSettings = field(default_factory=ImportSettings)
    credit: CreditSettings = field(default_factory=CreditSettings)
    dayparts: DaypartSettings = field(default_factory=DaypartSettings)
    profile: ProfileSettings = field(default_factory=ProfileSettings)
    churn: ChurnSettings = field(default_factory=ChurnSettings)
    privacy: PrivacySettings = field(default_factory=PrivacySettings)
    log: LogSettings = field(default_factory=lambda: LogSettings(format="text"))
