"""The campaign report (`campaign report ID [--json PATH]`), as ../shared/CONTRACTS.md fixes it.

Intention to treat: `treated` are the audience households outside the holdout whether or not a
cap let a message through; `holdout` the rest. A household converts when it accepts (answer 2)
or, within `attribution_days` of the campaign's first send, the product appears in its
subscriber record, or — a guide campaign that tunes or records — it watches 5 minutes of the
promoted airing: the ways a holdout household can convert too, so the difference is the
campaign's effect. A variant is credited with a household's conversion through the household's
last message (the accepted one: nobody is sent a message after accepting).

Beyond the contract: `status`, `allocation_history` (every Thompson-sampling decision) and, for
retention campaigns (a churn_alert trigger), `churn`: households whose subscription ended after
the first send, treated vs holdout.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from marketing.states import STATES, converters, first_send_ms
from marketing.store import CampaignRecord
from marketing.uplift import Uplift, uplift
from warehouse import Warehouse


def build_report(warehouse: Warehouse, record: CampaignRecord) -> dict[str, Any]:
    campaign = record.campaign
    db = warehouse.database
    got = warehouse.query_columns(
        "SELECT household_id, argMax(holdout, at_ms) AS holdout, argMax(state, at_ms) AS state "
        f"FROM {db}.contacts WHERE campaign = %(c)s GROUP BY household_id ORDER BY household_id", {"c": campaign.id})
    ids = np.asarray(got["household_id"], dtype=np.uint64)
    held = np.asarray(got["holdout"], dtype=np.uint8) == 1
    state = np.asarray(got["state"], dtype=object)
    first = first_send_ms(warehouse, campaign.id)
    bought = converters(warehouse, campaign, first) if first is not None else np.empty(0, dtype=np.uint64)
    converted = (state == "converted") | np.isin(ids, bought)
    funnel = {s: int(((state == s) & ~held).sum()) for s in STATES}
    effect = uplift(int((~held).sum()), int((converted & ~held).sum()), int(held.sum()), int((converted & held).sum()))
    report: dict[str, Any] = {
        "campaign": campaign.id, "status": record.status, "first_send_ms": first, "funnel": funnel,
        "treated": _arm(effect.treated_n, effect.treated_converted, effect.treated_rate),
        "holdout": _arm(effect.holdout_n, effect.holdout_converted, effect.holdout_rate),
        "uplift": {"absolute": effect.absolute, "relative": effect.relative,
                   "ci95": list(effect.ci95) if effect.ci95 is not None else None},
        "incremental_conversions": effect.incremental,
        "variants": _variants(warehouse, record, ids[converted & ~held]),
        "waves": _waves(warehouse, campaign.id),
        "allocation_history": _allocations(warehouse, campaign.id),
    }
    if campaign.trigger is not None and campaign.trigger.kind == "churn_alert" and first is not None:
        report["churn"] = _churn(warehouse, ids, held, first)
    return report


def _arm(n: int, converted: int, rate: float) -> dict[str, Any]:
    return {"households": n, "converted": converted, "rate": rate}


def _variants(warehouse: Warehouse, record: CampaignRecord, converters: np.ndarray) -> list[dict[str, Any]]:
    db, cid = warehouse.database, record.campaign.id
    sent = dict(warehouse.query_rows(f"SELECT variant, count() FROM {db}.deliveries WHERE campaign = %(c)s "
                                     "AND status = 'sent' GROUP BY variant", {"c": cid}))
    last = warehouse.query_columns(
        f"SELECT household_id, argMax(variant, decided_ms) AS variant FROM {db}.deliveries "
        "WHERE campaign = %(c)s AND status = 'sent' GROUP BY household_id", {"c": cid})
    credited = np.asarray(last["variant"], dtype=object)[np.isin(np.asarray(last["household_id"], dtype=np.uint64),
                                                                  converters)]
    return [{"id": v.id, "sent": int(sent.get(v.id, 0)), "converted": int((credited == v.id).sum())}
            for v in record.campaign.variants]


def _waves(warehouse: Warehouse, campaign: str) -> list[dict[str, Any]]:
    rows = warehouse.query_rows(f"SELECT wave, variant, count() FROM {warehouse.database}.deliveries "
                                "WHERE campaign = %(c)s AND status = 'sent' GROUP BY wave, variant "
                                "ORDER BY wave, variant", {"c": campaign})
    waves: dict[int, dict[str, int]] = {}
    for wave, variant, n in rows:
        waves.setdefault(int(wave), {})[str(variant)] = int(n)
    return [{"wave": w, "sent": sum(v.values()), "allocation": {k: n / sum(v.values()) for k, n in v.items()}}
            for w, v in sorted(waves.items())]


def _allocations(warehouse: Warehouse, campaign: str) -> list[dict[str, Any]]:
    rows = warehouse.query_rows(f"SELECT decided_ms, wave, variant, share FROM {warehouse.database}.allocations "
                                "WHERE campaign = %(c)s ORDER BY decided_ms, wave, variant", {"c": campaign})
    out: dict[tuple[int, int], dict[str, float]] = {}
    for at, wave, variant, share in rows:
        out.setdefault((int(at), int(wave)), {})[str(variant)] = round(float(share), 4)
    return [{"decided_ms": at, "wave": wave, "shares": shares} for (at, wave), shares in out.items()]


def _churn(warehouse: Warehouse, ids: np.ndarray, held: np.ndarray, first_ms: int) -> dict[str, Any]:
    got = warehouse.query_columns(
        f"SELECT household_id FROM {warehouse.database}.subscribers FINAL WHERE status = 'ended' "
        "AND ended >= toDate(%(since)s)", {"since": str(np.datetime64(first_ms, "ms").astype("datetime64[D]"))})
    left = np.isin(ids, np.asarray(got["household_id"], dtype=np.uint64))
    effect: Uplift = uplift(int((~held).sum()), int((left & ~held).sum()), int(held.sum()), int((left & held).sum()))
    return {"treated": _arm(effect.treated_n, effect.treated_converted, effect.treated_rate),
            "holdout": _arm(effect.holdout_n, effect.holdout_converted, effect.holdout_rate),
            "difference": effect.absolute, "ci95": list(effect.ci95) if effect.ci95 is not None else None}


def write_json(report: dict[str, Any], path: str) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(report, fh, indent=2)
        fh.write("\n")


def format_report(report: dict[str, Any]) -> str:
    """The report for a terminal: funnel, arms, uplift, variants, waves."""
    lines = [f"campaign {report['campaign']} ({report['status']})", "  funnel (treated households by state):"]
    lines += [f"    {state:<14} {n:>10,}" for state, n in report["funnel"].items()]
    for arm in ("treated", "holdout"):
        a = report[arm]
        lines.append(f"  {arm:<8} {a['households']:>10,} households, {a['converted']:>8,} converted "
                     f"({a['rate'] * 100:.2f} %)")
    u = report["uplift"]
    if u["absolute"] is None:
        empty = report["treated"]["households"] == 0
        lines.append("  uplift: nothing to measure yet (no audience)" if empty else
                     "  uplift: no control group (holdout 0)")
    else:
        rel = "n/a" if u["relative"] is None else f"{u['relative'] * 100:+.0f} %"
        lo, hi = u["ci95"]
        lines.append(f"  uplift {u['absolute'] * 100:+.2f} points (95 % CI {lo * 100:+.2f} .. {hi * 100:+.2f}), "
                     f"relative {rel}, incremental conversions {report['incremental_conversions']:.1f}")
    lines.append("  variants: " + ", ".join(f"{v['id']} sent {v['sent']:,} converted {v['converted']:,}"
                                          for v in report["variants"]))
    for w in report["waves"]:
        shares = ", ".join(f"{k} {s * 100:.0f} %" for k, s in w["allocation"].items())
        lines.append(f"  wave {w['wave']}: {w['sent']:,} sent ({shares})")
    if "churn" in report:
        c = report["churn"]
        lines.append(f"  churn: treated {c['treated']['rate'] * 100:.2f} %, holdout {c['holdout']['rate'] * 100:.2f} %")
    return "\n".join(lines)
