from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RecommendRequest(_message.Message):
    __slots__ = ("household_id", "k", "at_unix_ms", "window_minutes", "channel_ids", "exclude_watched")
    HOUSEHOLD_ID_FIELD_NUMBER: _ClassVar[int]
    K_FIELD_NUMBER: _ClassVar[int]
    AT_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    WINDOW_MINUTES_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_IDS_FIELD_NUMBER: _ClassVar[int]
    EXCLUDE_WATCHED_FIELD_NUMBER: _ClassVar[int]
    household_id: int
    k: int
    at_unix_ms: int
    window_minutes: int
    channel_ids: _containers.RepeatedScalarFieldContainer[int]
    exclude_watched: bool
    def __init__(self, household_id: _Optional[int] = ..., k: _Optional[int] = ..., at_unix_ms: _Optional[int] = ..., window_minutes: _Optional[int] = ..., channel_ids: _Optional[_Iterable[int]] = ..., exclude_watched: _Optional[bool] = ...) -> None: ...

class SimilarRequest(_message.Message):
    __slots__ = ("content_id", "k", "at_unix_ms", "channel_ids")
    CONTENT_ID_FIELD_NUMBER: _ClassVar[int]
    K_FIELD_NUMBER: _ClassVar[int]
    AT_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_IDS_FIELD_NUMBER: _ClassVar[int]
    content_id: int
    k: int
    at_unix_ms: int
    channel_ids: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, content_id: _Optional[int] = ..., k: _Optional[int] = ..., at_unix_ms: _Optional[int] = ..., channel_ids: _Optional[_Iterable[int]] = ...) -> None: ...

class PopularRequest(_message.Message):
    __slots__ = ("at_unix_ms", "window_minutes", "channel_ids", "k")
    AT_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    WINDOW_MINUTES_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_IDS_FIELD_NUMBER: _ClassVar[int]
    K_FIELD_NUMBER: _ClassVar[int]
    at_unix_ms: int
    window_minutes: int
    channel_ids: _containers.RepeatedScalarFieldContainer[int]
    k: int
    def __init__(self, at_unix_ms: _Optional[int] = ..., window_minutes: _Optional[int] = ..., channel_ids: _Optional[_Iterable[int]] = ..., k: _Optional[int] = ...) -> None: ...

class Item(_message.Message):
    __slots__ = ("programme_id", "content_id", "channel_id", "start_unix_ms", "stop_unix_ms", "score", "reason")
    PROGRAMME_ID_FIELD_NUMBER: _ClassVar[int]
    CONTENT_ID_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_ID_FIELD_NUMBER: _ClassVar[int]
    START_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    STOP_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    programme_id: int
    content_id: int
    channel_id: int
    start_unix_ms: int
    stop_unix_ms: int
    score: float
    reason: str
    def __init__(self, programme_id: _Optional[int] = ..., content_id: _Optional[int] = ..., channel_id: _Optional[int] = ..., start_unix_ms: _Optional[int] = ..., stop_unix_ms: _Optional[int] = ..., score: _Optional[float] = ..., reason: _Optional[str] = ...) -> None: ...

class RecommendResponse(_message.Message):
    __slots__ = ("items", "model_version", "request_id")
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[Item]
    model_version: str
    request_id: str
    def __init__(self, items: _Optional[_Iterable[_Union[Item, _Mapping]]] = ..., model_version: _Optional[str] = ..., request_id: _Optional[str] = ...) -> None: ...
