"""Convenience constructors for the wire events, shared by `Agent` and `AgentThread`.

Each helper builds the positional array `[kind, ts_ms, field...]` of proto/TELEMETRY.md
and hands it to `record()`, so it validates the same way and returns the same bool.
`ts_ms` defaults to the agent's clock; a `view` defaults to having begun `duration_s` ago,
since firmware reports a view when it ends.
"""

from __future__ import annotations

from typing import Any, Final

from proto.telemetry import KIND_BY_NAME

_VIEW: Final = KIND_BY_NAME["view"].code
_TUNE: Final = KIND_BY_NAME["tune"].code
_EPG_CLICK: Final = KIND_BY_NAME["epg_click"].code
_VOD_PLAY: Final = KIND_BY_NAME["vod_play"].code
_POWER: Final = KIND_BY_NAME["power"].code
_REC_IMPRESSION: Final = KIND_BY_NAME["rec_impression"].code
_REC_CLICK: Final = KIND_BY_NAME["rec_click"].code
_MSG_SHOWN: Final = KIND_BY_NAME["msg_shown"].code
_MSG_RESPONSE: Final = KIND_BY_NAME["msg_response"].code


class EventHelpers:
    """Mixin: the class provides `record(event) -> bool` and `now_ms() -> int`."""

    def record(self, event: list[Any]) -> bool:
        raise NotImplementedError

    def now_ms(self) -> int:
        raise NotImplementedError

    def view(self, channel_id: int, programme_id: int, duration_s: int, end_reason: int = 0, *,
             ts_ms: int | None = None) -> bool:
        """A finished stretch of live viewing; end_reason 0 tune-away, 1 standby, 2 programme end."""
        start = self.now_ms() - duration_s * 1000 if ts_ms is None else ts_ms
        return self.record([_VIEW, start, channel_id, programme_id, duration_s, end_reason])

    def tune(self, from_channel: int, to_channel: int, method: int = 0, *, ts_ms: int | None = None) -> bool:
        """A channel change; method 0 digits, 1 up/down, 2 guide, 3 recommendation."""
        return self.record([_TUNE, self._ts(ts_ms), from_channel, to_channel, method])

    def epg_click(self, screen: str, action: str, programme_id: int = 0, *, ts_ms: int | None = None) -> bool:
        return self.record([_EPG_CLICK, self._ts(ts_ms), screen, action, programme_id])

    def vod_play(self, asset_id: str, position_s: int = 0, duration_s: int = 0, *,
                 ts_ms: int | None = None) -> bool:
        return self.record([_VOD_PLAY, self._ts(ts_ms), asset_id, position_s, duration_s])

    def power(self, state: int, *, ts_ms: int | None = None) -> bool:
        """state 0 off, 1 on, 2 standby."""
        return self.record([_POWER, self._ts(ts_ms), state])

    def rec_impression(self, request_id: str, model_version: str, programme_id: int, rank: int = 0, *,
                       ts_ms: int | None = None) -> bool:
        return self.record([_REC_IMPRESSION, self._ts(ts_ms), request_id, model_version, programme_id, rank])

    def rec_click(self, request_id: str, programme_id: int, rank: int = 0, *, ts_ms: int | None = None) -> bool:
        return self.record([_REC_CLICK, self._ts(ts_ms), request_id, programme_id, rank])

    def msg_shown(self, message_id: str, campaign: str, variant: str, *, ts_ms: int | None = None) -> bool:
        """The firmware displayed a message for the box (agent.on_message / the messages socket)."""
        return self.record([_MSG_SHOWN, self._ts(ts_ms), message_id, campaign, variant])

    def msg_response(self, message_id: str, campaign: str, variant: str, response: int, *,
                     ts_ms: int | None = None) -> bool:
        """The viewer's answer: 0 dismissed, 1 interested, 2 accepted, 3 refused, 4 unsubscribe."""
        return self.record([_MSG_RESPONSE, self._ts(ts_ms), message_id, campaign, variant, response])

    def _ts(self, ts_ms: int | None) -> int:
        return self.now_ms() if ts_ms is None else ts_ms
