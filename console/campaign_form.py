"""The new-campaign form's fields as a campaign file (TOML, ../shared/CONTRACTS.md "Marketing").

The console stores exactly what the CLI would: the file's text. The form covers the common case
(a segment, a daily time or a send-once, one or two variants); the raw TOML box covers the rest.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Final

ACTIONS: Final = ("info", "tune", "record", "offer")
TEMPLATES: Final = {
    "quiz": ("Quiz night: {title}", "Play along with {title} on {channel} at {start}. Press OK to join."),
    "reminder": ("Tonight: {title}", "{title} on {channel} at {start}. Press OK to watch."),
    "offer": ("A gift for you", "Add the package this month at half price. Press OK for details."),
}


def _s(text: str) -> str:
    """A TOML basic string (JSON's escapes are TOML's)."""
    return json.dumps(text, ensure_ascii=False)


def campaign_toml(form: Mapping[str, str]) -> str:
    """The campaign file for the form's fields (validation is parse_campaign's job)."""
    lines = [f"id = {_s(form.get('id', '').strip())}"]
    if form.get("name", "").strip():
        lines.append(f"name = {_s(form['name'].strip())}")
    lines += [f"product = {_s(form.get('product', '').strip())}",
              f"segment = {_s(form.get('segment', '').strip())}",
              f"holdout = {_number(form.get('holdout', '0.1'))}",
              f"priority = {_number(form.get('priority', '0'), integer=True)}"]
    if form.get("start", "").strip():
        lines.append(f"start = {_s(form['start'].strip())}")
    lines += ["", "[waves]", f"count = {_number(form.get('waves', '1'), integer=True)}",
              f"after_hours = {_number(form.get('after_hours', '24'))}"]
    if form.get("daily", "").strip():
        lines += ["", "[schedule]", f"daily = {_s(form['daily'].strip())}"]
    for suffix in ("a", "b"):
        title, body = form.get(f"title_{suffix}", "").strip(), form.get(f"body_{suffix}", "").strip()
        if not title and not body:
            continue
        action = form.get(f"action_{suffix}", "info")
        lines += ["", "[[variants]]", f"id = {_s(suffix)}", f"title = {_s(title)}", f"body = {_s(body)}",
                  f"action = {{ type = {_s(action if action in ACTIONS else 'info')} }}"]
    return "\n".join(lines) + "\n"


def _number(text: str, integer: bool = False) -> str:
    """A TOML number, or the text quoted (so parse_campaign names the bad key)."""
    text = text.strip()
    try:
        return str(int(text)) if integer else repr(float(text))
    except ValueError:
        return _s(text)
