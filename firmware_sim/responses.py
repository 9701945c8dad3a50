"""How households answer messages on the TV: by taste, tiring of them, and buying on their own.

    model = ResponseModel(epg, households)                  # churn defaults to Churn.generate(households)
    topic = MessageTopic.of(message, epg)                   # what a downlink message is about
    answer = model.decide(row, message, now_ms, k, decision_rng(seed, household_id, message["id"]))
    model.p_response(rows, topic, k)                        # [n, 5] P(code | shown), codes 0..4
    model.p_convert(rows, topic, k, 7, treated=True)        # [n] the truth behind a campaign report

The issue's simulator: a football fan answers a football message, everyone tires of messages
(acceptance falls and unsubscribing rises with the messages of the past week, so frequency caps
pay), and a retention offer keeps only a PERSUADABLE household (firmware_sim.churn). The truth
functions and `decide` read the same probabilities, so a benchmark can compute the planted uplift
of any audience (mean of p_convert treated - untreated) and the responder (firmware_sim.responder)
draws real answers from them.

A message, once it reaches a box, is **shown** when a box of the household is on before it expires:
P(shown) = 1 - prod over the hours of the window of P(no session in that hour), from the members'
daypart habits (`Households.presence`), zero on days the household is away or has left (churn).
Shown, the viewer answers with code c with probability p_response[c] (0 dismissed, 1 interested,
2 accepted, 3 refused, 4 unsubscribe); the rest of the mass is no answer at all:
- accepted: BASE_ACCEPT[action] * appeal * affinity * FATIGUE**k (at most 0.6), appeal the content
  variant's hidden quality (`variant_appeal`, 0.5-1.5 by campaign and variant id), k = messages the household got in the
  past 7 days before this one; an offer of a product the household already has is never accepted;
- unsubscribe: min(UNSUBSCRIBE_BASE * 2**k, UNSUBSCRIBE_CAP), whatever the taste;
- of the rest: interested INTERESTED * affinity * fatigue, refused REFUSE_BASE + REFUSE_AVERSION *
  (1 - affinity), dismissed DISMISS, and no answer what is left (at least 10 %).

Affinity (0..1) by topic: football messages 0.6-1 for households with a planted football fan (by
sport taste), else 0.04-0.10 (non-fans avoid football: households.NON_FAN_UTILITY); sport likewise
for fans, 0.15 x sport taste for others (the sports package sells to football fans); films the film
taste; retention by churn state (PERSUADABLE 0.9, SURE_THING 0.3, LOST_CAUSE 0.2);
generic 0.3. A member's taste counts fully at three times the average genre share.

Topic rule (MessageTopic.of): a message is a **retention** offer when its campaign id starts with
"retention" or its action offers product "retention"; else **football** when its action's programme
is a football match; **sport** for another sport programme or an offer of "sports"; **films** for a
film or an offer of "films"; **generic** otherwise. The promoted product is the action's `product`
key (marketing may add it to any action), for offers and tunes alike.

Organic purchases: without any message, a household buys a product in a week with P ORGANIC_MIN +
(ORGANIC_MAX - ORGANIC_MIN) * its affinity for the product ("sports": fans 1 %, others 0.1-0.55 %
by sport taste; "films" by film taste; other products ORGANIC_MIN); never one it already has. This is
what a holdout converts at. Draws are keyed by (seed, household, day, product): `organic(rows, day)`.
"""

from __future__ import annotations

import datetime as dt
import enum
import zlib
from dataclasses import dataclass
from typing import Any, Final

import numpy as np

from firmware_sim import catalogue as cat
from firmware_sim import rng
from firmware_sim.choice import HOUR_DAYPART
from firmware_sim.churn import LOST_CAUSE, PERSUADABLE, SURE_THING, Churn
from firmware_sim.epg import DAY_MS, Epg
from firmware_sim.households import Households, football_fan_households

DISMISSED, INTERESTED_CODE, ACCEPTED, REFUSED, UNSUBSCRIBED = range(5)
RESPONSES: Final = ("dismissed", "interested", "accepted", "refused", "unsubscribe")
HOUR_MS: Final = 3_600_000
MAX_WINDOW_DAYS: Final = 14          # P(shown) looks at most this far ahead (messages expire sooner)

# Why these numbers: a football message is accepted by fans 8-10x as often as by non-fans. But 36 % of
# households have a planted fan (households.py, measured on 20k), so no model can make *all* fans convert
# 3x a random audience (the bound is 1 / 0.36 = 2.8; a tune to all fans reaches ~2.45x). The 3x
# holds for the campaign a marketer runs: the sports offer to fans without the sports package
# (`interest.football and not product.sports and not product.full`, ~25 % of households): ~3.5x.
# Paying for something (an offer) is harder than watching a match (tune).
BASE_ACCEPT: Final = {"tune": 0.30, "record": 0.20, "offer": 0.12, "info": 0.03}
FATIGUE: Final = 0.75                # acceptance x FATIGUE**k: the 4th message in a week converts at 42 %
UNSUBSCRIBE_BASE: Final = 0.002      # 0.2 % on a first message ...
UNSUBSCRIBE_CAP: Final = 0.20        # ... doubling with every message that week, up to 20 %
INTERESTED: Final = 0.25             # share of the rest that asks for more, x affinity x fatigue
REFUSE_BASE: Final = 0.10            # everybody refuses some ...
REFUSE_AVERSION: Final = 0.20        # ... and those the topic does not suit refuse more
DISMISS: Final = 0.35                # press back without deciding
# Affinity by topic (see the docstring).
FAN: Final = (0.6, 0.4)              # fans: 0.6 + 0.4 x sport taste (the keenest answer most)
NON_FAN_FOOTBALL: Final = (0.04, 0.06)   # 0.04 + 0.06 x sport taste: non-fans avoid football
NON_FAN_SPORT: Final = 0.15          # x sport taste: the sports package sells to football fans
FLOOR: Final = 0.05
RETENTION_AFFINITY: Final = {SURE_THING: 0.3, PERSUADABLE: 0.9, LOST_CAUSE: 0.2}
GENERIC_AFFINITY: Final = 0.3
APPEAL: Final = (0.5, 1.5)           # variants' quality spread: the best converts up to 3x the worst
TASTE_FULL: Final = 3.0              # a genre share 3x the average counts as full affinity
# Organic purchases per week: fans buy "sports" at ~1 %/week, households without interest at 0.1 %.
ORGANIC_MIN: Final = 0.001
ORGANIC_MAX: Final = 0.010
ORGANIC_PRODUCTS: Final = ("sports", "films")
RETENTION_PRODUCT: Final = "retention"
# Seconds between a message arriving and being shown, and between shown and the answer (simulated).
SHOWN_DELAY_S: Final = (0.2, 5.0)
ANSWER_DELAY_S: Final = (1.0, 15.0)
# rng purposes of this module (firmware_sim.rng tags stay below 100).
TAG_DECISION: Final = 101
TAG_ORGANIC: Final = 102
_OWNS: Final = {"sports": ("sports", "full"), "films": ("films", "full")}  # packages that include it


class Topic(enum.StrEnum):
    FOOTBALL = "football"
    SPORT = "sport"
    FILMS = "films"
    RETENTION = "retention"
    GENERIC = "generic"


@dataclass(frozen=True, slots=True)
class MessageTopic:
    """What a message is about, how it asks (its action type) and the product it promotes ("" none)."""

    topic: Topic
    action: str = "tune"
    product: str = ""
    appeal: float = 1.0                  # the content variant's hidden quality (variant_appeal)

    @classmethod
    def of(cls, message: dict[str, Any], epg: Epg) -> MessageTopic:
        raw = message.get("action")
        action: dict[str, Any] = raw if isinstance(raw, dict) else {}
        kind = str(action.get("type", "info"))
        product = str(action.get("product", ""))
        campaign = str(message.get("campaign", ""))
        appeal = variant_appeal(campaign, str(message.get("variant", "")))
        if campaign.startswith("retention") or product == RETENTION_PRODUCT:
            return cls(Topic.RETENTION, kind, RETENTION_PRODUCT, appeal)
        genre, football = _programme_genre(epg, action.get("programme_id"))
        if football:
            topic = Topic.FOOTBALL
        elif genre == cat.SPORT or product == "sports":
            topic = Topic.SPORT
        elif genre == cat.FILM or product == "films":
            topic = Topic.FILMS
        else:
            topic = Topic.GENERIC
        return cls(topic, kind, product, appeal)


@dataclass(frozen=True, slots=True)
class Answer:
    """One received message: shown when (None: never shown), the answer (None: none) and when."""

    shown_at_ms: int | None
    response: int | None
    responded_at_ms: int | None


def variant_appeal(campaign: str, variant: str) -> float:
    """A content variant's hidden quality: acceptance x APPEAL[0] .. APPEAL[1], fixed by (campaign, variant),
    so variants of one campaign differ and a bandit has a best one to find (the truth holds it)."""
    u = zlib.crc32(f"{campaign}/{variant}".encode()) / 2**32
    return APPEAL[0] + (APPEAL[1] - APPEAL[0]) * u


def decision_rng(seed: int, household_id: int, message_id: str) -> np.random.Generator:
    """The draws for one household and message: the same answer whenever the message comes."""
    return np.random.default_rng([seed & 0xFFFFFFFF, TAG_DECISION, household_id, zlib.crc32(message_id.encode())])


class ResponseModel:
    """Response probabilities of a world's households (rows index `households`), vectorised."""

    def __init__(self, epg: Epg, households: Households, churn: Churn | None = None) -> None:
        self.epg = epg
        self.households = households
        self.churn = churn or Churn.generate(households)
        starts = households.member_start[:-1]
        share = np.exp(households.tastes.taste)   # genre share x G
        self.fan = football_fan_households(households)
        self.sport_taste = np.clip(np.maximum.reduceat(share[:, cat.SPORT], starts) / TASTE_FULL, 0, 1)
        self.film_taste = np.clip(np.maximum.reduceat(share[:, cat.FILM], starts) / TASTE_FULL, 0, 1)
        # log P(no session) per household, weekday/weekend, daypart, spread over the daypart's hours
        log_off = np.add.reduceat(np.log1p(-households.presence.astype(np.float64)), starts, axis=0)
        self._log_off_hour = log_off / np.bincount(HOUR_DAYPART, minlength=log_off.shape[2])[None, None, :]
        packages = np.array(cat.PACKAGE_NAMES)[households.package]
        self._owns = {p: np.isin(packages, owners) for p, owners in _OWNS.items()}

    # -- probabilities -------------------------------------------------------------------------

    def affinity(self, rows: np.ndarray, topic: MessageTopic) -> np.ndarray:
        rows = np.asarray(rows, dtype=np.int64)
        t = topic.topic
        taste = self.sport_taste[rows]
        if t is Topic.FOOTBALL:
            a = np.where(self.fan[rows], FAN[0] + FAN[1] * taste, NON_FAN_FOOTBALL[0] + NON_FAN_FOOTBALL[1] * taste)
        elif t is Topic.SPORT:
            a = np.where(self.fan[rows], FAN[0] + FAN[1] * taste, NON_FAN_SPORT * taste)
        elif t is Topic.FILMS:
            a = self.film_taste[rows]
        elif t is Topic.RETENTION:
            a = np.vectorize(RETENTION_AFFINITY.__getitem__, otypes=[float])(self.churn.retention[rows])
        else:
            a = np.full(len(rows), GENERIC_AFFINITY)
        a = np.maximum(a, FLOOR)
        if topic.action == "offer":
            a = np.where(self.owns(rows, topic.product), 0.0, a)
        return np.asarray(a, dtype=np.float64)

    def owns(self, rows: np.ndarray, product: str) -> np.ndarray:
        """bool [n]: the household's package already includes `product`."""
        owned = self._owns.get(product)
        return owned[rows] if owned is not None else np.zeros(len(rows), dtype=bool)

    def p_response(self, rows: np.ndarray, topic: MessageTopic, k: int | np.ndarray) -> np.ndarray:
        """float [n, 5]: P(answer code | shown), codes 0..4; 1 - the row sum is "no answer"."""
        a = self.affinity(rows, topic)
        fatigue = FATIGUE ** np.asarray(k, dtype=np.float64)
        accept = np.minimum(BASE_ACCEPT.get(topic.action, BASE_ACCEPT["info"]) * topic.appeal * a * fatigue, 0.6)
        unsub = np.minimum(UNSUBSCRIBE_BASE * 2.0 ** np.asarray(k, dtype=np.float64), UNSUBSCRIBE_CAP)
        rest = 1.0 - accept - unsub
        out = np.empty((len(a), 5))
        out[:, DISMISSED] = rest * DISMISS
        out[:, INTERESTED_CODE] = rest * INTERESTED * a * fatigue
        out[:, ACCEPTED] = accept
        out[:, REFUSED] = rest * (REFUSE_BASE + REFUSE_AVERSION * (1.0 - a))
        out[:, UNSUBSCRIBED] = unsub
        return out

    def p_shown(self, rows: np.ndarray, start_ms: int, expires_ms: int) -> np.ndarray:
        """float [n]: a box of the household is on between `start_ms` and `expires_ms`."""
        rows = np.asarray(rows, dtype=np.int64)
        end = min(expires_ms, start_ms + MAX_WINDOW_DAYS * DAY_MS)
        log_off = np.zeros(len(rows))
        hour = start_ms - start_ms % HOUR_MS
        present: dict[int, np.ndarray] = {}
        while hour < end:
            f = (min(hour + HOUR_MS, end) - max(hour, start_ms)) / HOUR_MS
            day = (hour - self.epg.start_ms) // DAY_MS
            if day not in present:
                present[day] = self.churn.day(rows, int(day)).present
            when = dt.datetime.fromtimestamp(hour / 1000, dt.UTC)
            hourly = self._log_off_hour[rows, int(when.weekday() >= 5), HOUR_DAYPART[when.hour]]
            log_off += f * np.where(present[day], hourly, 0.0)
            hour += HOUR_MS
        return np.asarray(-np.expm1(log_off))

    def p_on_day(self, rows: np.ndarray) -> np.ndarray:
        """float [n]: a box of the household is on at some time of a weekday (P(shown) of a message
        that lasts a day, ignoring holidays and leavers): the default reach in the truth functions."""
        hours = np.bincount(HOUR_DAYPART, minlength=self._log_off_hour.shape[2])
        log_off = (self._log_off_hour[np.asarray(rows, dtype=np.int64), 0] * hours[None, :]).sum(axis=1)
        return np.asarray(-np.expm1(log_off))

    def p_organic(self, rows: np.ndarray, product: str, window_days: float) -> np.ndarray:
        """float [n]: the household buys `product` on its own within `window_days`."""
        rows = np.asarray(rows, dtype=np.int64)
        weekly = self.organic_weekly(rows, product)
        return np.asarray(-np.expm1(np.log1p(-weekly) * window_days / 7.0))

    def organic_weekly(self, rows: np.ndarray, product: str) -> np.ndarray:
        rows = np.asarray(rows, dtype=np.int64)
        if product == "sports":
            a = np.maximum(self.fan[rows].astype(np.float64), 0.5 * self.sport_taste[rows])
        elif product == "films":
            a = self.film_taste[rows]
        elif product in ("", RETENTION_PRODUCT):
            return np.zeros(len(rows))
        else:
            a = np.zeros(len(rows))
        return np.asarray(np.where(self.owns(rows, product), 0.0, ORGANIC_MIN + (ORGANIC_MAX - ORGANIC_MIN) * a))

    def p_convert(self, rows: np.ndarray, topic: MessageTopic, k: int | np.ndarray, window_days: float,
                  treated: bool, shown: np.ndarray | None = None) -> np.ndarray:
        """float [n]: P(conversion within `window_days`): treated, accepting the message (shown with
        P `shown`, default `p_on_day`) or buying the promoted product on its own; untreated, only
        the latter. The planted uplift of an audience is mean(treated - untreated)."""
        rows = np.asarray(rows, dtype=np.int64)
        organic = self.p_organic(rows, topic.product, window_days)
        if not treated:
            return organic
        reach = self.p_on_day(rows) if shown is None else np.asarray(shown, dtype=np.float64)
        accept = reach * self.p_response(rows, topic, k)[:, ACCEPTED]
        return np.asarray(1.0 - (1.0 - accept) * (1.0 - organic))

    def p_saved(self, rows: np.ndarray, shown: np.ndarray | None = None) -> np.ndarray:
        """float [n]: P(a retention offer keeps the household): shown to a PERSUADABLE one."""
        rows = np.asarray(rows, dtype=np.int64)
        reach = self.p_on_day(rows) if shown is None else np.asarray(shown, dtype=np.float64)
        return np.asarray(reach * (self.churn.retention[rows] == PERSUADABLE))

    # -- draws ------------------------------------------------------------------------------------

    def decide(self, row: int, message: dict[str, Any], now_ms: int, k: int, gen: np.random.Generator) -> Answer:
        """One received message: shown (P `p_shown` until it expires), then an answer drawn from
        `p_response`; timestamps are `now_ms` plus small simulated delays."""
        u_shown, u_answer, d_shown, d_answer = gen.random(4)
        rows = np.array([row])
        if u_shown >= self.p_shown(rows, now_ms, int(message["expires"]))[0]:
            return Answer(None, None, None)
        shown_at = now_ms + int(1000 * (SHOWN_DELAY_S[0] + (SHOWN_DELAY_S[1] - SHOWN_DELAY_S[0]) * d_shown))
        cum = np.cumsum(self.p_response(rows, MessageTopic.of(message, self.epg), k)[0])
        code = int(np.searchsorted(cum, u_answer, side="right"))
        if code >= len(RESPONSES):
            return Answer(shown_at, None, None)
        answered = shown_at + int(1000 * (ANSWER_DELAY_S[0] + (ANSWER_DELAY_S[1] - ANSWER_DELAY_S[0]) * d_answer))
        return Answer(shown_at, code, answered)

    def organic(self, rows: np.ndarray, day: dt.date) -> list[tuple[int, str]]:
        """(row, product) bought on their own on `day` (keyed by seed, household, day, product)."""
        rows = np.asarray(rows, dtype=np.int64)
        ids = self.households.household_id[rows]
        out: list[tuple[int, str]] = []
        for j, product in enumerate(ORGANIC_PRODUCTS):
            daily = -np.expm1(np.log1p(-self.organic_weekly(rows, product)) / 7.0)
            u = rng.uniform(rng.seed_key(self.households.seed, TAG_ORGANIC), ids, day.toordinal(), j)
            out.extend((int(r), product) for r in rows[u < daily])
        return out


def _programme_genre(epg: Epg, programme_id: object) -> tuple[int, bool]:
    """(genre index, is a football match) of a programme id, (-1, False) when unknown. A programme
    outside the guide's days is found by its content (programme_id // 1e6, epg.py)."""
    if not isinstance(programme_id, int) or programme_id <= 0:
        return -1, False
    content = np.searchsorted(epg.content_ids, np.uint64(programme_id // 1_000_000))
    if content >= len(epg.content_ids) or int(epg.content_ids[content]) != programme_id // 1_000_000:
        return -1, False
    return int(epg.content_genre[content]), bool(epg.content_football[content])


__all__ = ["ACCEPTED", "BASE_ACCEPT", "DISMISSED", "FATIGUE", "REFUSED", "RESPONSES", "UNSUBSCRIBED", "Answer",
           "MessageTopic", "ResponseModel", "Topic", "decision_rng"]
