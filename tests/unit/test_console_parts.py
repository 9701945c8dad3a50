"""Console parts without a store: the campaign form's TOML, the campaign report as the page shows it,
charts, the CSRF gate, settings."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route
from starlette.testclient import TestClient

from console.campaign_form import TEMPLATES, campaign_toml
from console.campaign_view import allocation_series, page_context, uplift_sentence
from console.charts import bars, lines
from console.security import Signer
from console.settings import ENV_PREFIX, ConsoleSettings
from console.web import COOKIE, SessionMiddleware, session_of
from marketing.campaign import parse_campaign
from marketing.errors import CampaignError
from marketing.uplift import uplift
from stbcommon.settings import SettingsError, load


def test_form_fields_become_a_campaign_file_the_parser_accepts() -> None:
    title = TEMPLATES["quiz"][0]
    text = campaign_toml({"id": "quiz-night", "segment": '@football-fans', "product": "sports", "holdout": "0.2",
                          "priority": "3", "daily": "18:00", "waves": "2", "after_hours": "12",
                          "title_a": title, "body_a": 'say "hi"\\ now', "action_a": "tune",
                          "title_b": "B", "body_b": "b", "action_b": "nonsense"})
    campaign = parse_campaign(text)
    assert (campaign.id, campaign.segment, campaign.holdout, campaign.priority) == ("quiz-night", "@football-fans",
                                                                                   0.2, 3)
    assert campaign.schedule and campaign.schedule.daily == "18:00" and campaign.waves.count == 2
    assert [v.action["type"] for v in campaign.variants] == ["tune", "info"]
    assert campaign.variants[0].body == 'say "hi"\\ now'


def test_a_bad_field_is_named_by_the_parser() -> None:
    with pytest.raises(CampaignError, match="holdout"):
        parse_campaign(campaign_toml({"id": "x", "segment": "a", "holdout": "lots", "title_a": "t", "body_a": "b"}))


def _report(treated: tuple[int, int], holdout: tuple[int, int]) -> dict[str, Any]:
    """A report shaped as marketing.report.build_report writes it, its uplift from marketing.uplift."""
    effect = uplift(treated[0], treated[1], holdout[0], holdout[1])
    return {"campaign": "c", "status": "active", "first_send_ms": 1_764_547_200_000,
            "funnel": {"not_contacted": 0, "contacted": treated[0] - treated[1], "converted": treated[1]},
            "treated": {"households": effect.treated_n, "converted": effect.treated_converted,
                        "rate": effect.treated_rate},
            "holdout": {"households": effect.holdout_n, "converted": effect.holdout_converted,
                        "rate": effect.holdout_rate},
            "uplift": {"absolute": effect.absolute, "relative": effect.relative,
                       "ci95": list(effect.ci95) if effect.ci95 is not None else None},
            "incremental_conversions": effect.incremental,
            "variants": [{"id": "a", "sent": 10, "converted": 1}],
            "waves": [{"wave": 1, "sent": 10, "allocation": {"a": 0.6, "b": 0.4}}],
            "allocation_history": [{"decided_ms": 1_764_547_200_000, "wave": 1, "shares": {"a": 0.5, "b": 0.5}},
                                   {"decided_ms": 1_764_550_800_000, "wave": 1, "shares": {"a": 0.6, "b": 0.4}}]}


def test_the_campaign_page_shows_the_reports_uplift_and_interval() -> None:
    report = _report((1000, 150), (100, 10))
    lo, hi = report["uplift"]["ci95"]
    sentence = uplift_sentence(report)
    assert sentence.startswith("Uplift +5.00 points") and "relative +50 %" in sentence
    assert f"{100 * lo:+.2f} points to {100 * hi:+.2f} points" in sentence and "conversions 50.0" in sentence
    assert uplift_sentence(_report((10, 1), (0, 0))).startswith("No holdout households")
    assert uplift_sentence(_report((0, 0), (0, 0))).startswith("Nothing to measure yet")
    context = page_context(report)
    assert context["funnel"] == [("not_contacted", 0), ("contacted", 850), ("converted", 150)]
    assert str(context["funnel_chart"]).count("<rect") == 3 and str(context["alloc_chart"]).count("<circle") == 4
    assert context["waves"] == [(1, 10, "a 60.0 %, b 40.0 %")]
    assert context["allocations"][-1] == (1_764_550_800_000, 1, "a 60.0 %, b 40.0 %")
    empty = page_context(_report((0, 0), (0, 0)) | {"allocation_history": []})
    assert str(empty["funnel_chart"]) == "" and str(empty["alloc_chart"]) == ""


def test_allocation_series_split_by_wave_only_when_several() -> None:
    history = [{"decided_ms": 0, "wave": 1, "shares": {"a": 1.0}}, {"decided_ms": 60_000, "wave": 2,
                                                                     "shares": {"a": 0.25}}]
    assert allocation_series(history) == {"w1 a": [("01-01 00:00", 100.0)], "w2 a": [("01-01 00:01", 25.0)]}
    assert list(allocation_series(history[:1])) == ["a"]


def test_charts_are_inline_svg_with_escaped_labels() -> None:
    svg = str(bars([("<b>", 2.0), ("late", 1.0)], title="Share & more"))
    assert svg.startswith("<svg") and "&lt;b&gt;" in svg and "Share &amp; more" in svg and svg.count("<rect") == 2
    assert str(lines({"v1": [("2026-12-01", 1.0), ("2026-12-02", 3.0)]}, title="t")).count("<circle") == 2
    assert str(bars([], title="none")) == "" and str(lines({}, title="none")) == ""


def _gate() -> TestClient:
    async def post(request: Request) -> Response:
        form = await request.form()
        return PlainTextResponse(f"ok {form.get('x')}")

    async def token(request: Request) -> Response:
        return PlainTextResponse(signer.csrf_token(session_of(request).nonce))

    signer = Signer(b"s" * 32)
    app = Starlette(routes=[Route("/t", token), Route("/p", post, methods=["POST"])])
    app.add_middleware(SessionMiddleware, signer=signer, max_age_s=60, trust_proxy=False)
    return TestClient(app, base_url="http://console.test")


def test_every_post_needs_the_sessions_csrf_token() -> None:
    client = _gate()
    first = client.get("/t")
    cookie = first.headers["set-cookie"]
    assert cookie.startswith(f"{COOKIE}=") and "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert "Secure" not in cookie  # plain HTTP here; over TLS the cookie is Secure
    assert client.post("/p", data={"x": "1"}).status_code == 403
    assert client.post("/p", data={"x": "1", "csrf_token": "forged"}).status_code == 403
    assert client.post("/p", json={"csrf_token": first.text}).status_code == 403  # forms only
    good = client.post("/p", data={"x": "1", "csrf_token": first.text})
    assert good.status_code == 200 and good.text == "ok 1"
    client.cookies.clear()
    assert client.post("/p", data={"x": "1", "csrf_token": first.text}).status_code == 403  # another session


def test_https_cookies_are_secure() -> None:
    client = _gate()
    client.base_url = client.base_url.copy_with(scheme="https")
    assert "Secure" in client.get("/t").headers["set-cookie"]


def test_settings_from_environment_and_refused_values(tmp_path: Path) -> None:
    got = load(ConsoleSettings, env={f"{ENV_PREFIX}__HTTP__LISTEN": "0.0.0.0:9000"}, env_prefix=ENV_PREFIX)
    assert got.http.listen == "0.0.0.0:9000"
    with pytest.raises(SettingsError) as err:
        load(ConsoleSettings, overrides={"http.listen": "nowhere", "recommender.address": "x",
                                         "http.tls_cert": "c.pem"})
    assert len(err.value.problems) == 3
    exposed = tmp_path / "console.toml"
    exposed.write_text('[store]\nurl = "clickhouse://u:secret@h:9000/stb"\n')
    exposed.chmod(0o644)
    with pytest.raises(SettingsError, match="chmod 600"):
        load(ConsoleSettings, toml_path=exposed)
