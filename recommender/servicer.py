"""The gRPC adapter: requests in, engine calls, responses out; typed errors become status codes.

    InvalidArgument -> INVALID_ARGUMENT, UnknownContent -> NOT_FOUND, anything else -> INTERNAL
    (Recommend answers with popular-now instead, reason "fallback:popular": the guide must
    always get something).
"""

from __future__ import annotations

import functools
import inspect
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Protocol

import grpc

from proto import recommender_pb2 as pb
from proto import recommender_pb2_grpc as pb_grpc
from recommender import metrics
from recommender.batch import Query, recommend_one
from recommender.engine import COLD_START, Answer, Engine, Snapshot
from recommender.errors import InvalidArgument, UnknownContent

if TYPE_CHECKING:
    from recommender.microbatch import Batcher

log = logging.getLogger("recommender.servicer")
FALLBACK = "fallback:popular"


class SnapshotSource(Protocol):
    @property
    def snapshot(self) -> Snapshot: ...


def to_proto(answer: Answer, reason_override: str = "") -> pb.RecommendResponse:
    # items.add(...) on the response: 12 us for 10 items against 20 us building pb.Item objects
    # and passing the list (measured, upb protobuf)
    response = pb.RecommendResponse(model_version=answer.model_version, request_id=answer.request_id)
    add = response.items.add
    for programme, content, channel, start, stop, score, reason in answer.items:
        add(programme_id=programme, content_id=content, channel_id=channel, start_unix_ms=start,
            stop_unix_ms=stop, score=score, reason=reason_override or reason)
    return response


# Metric children by label values: prometheus_client's labels() costs ~5 us a lookup, three a call.
@functools.cache
def _answers(kind: str) -> Any:
    return metrics.ANSWERS.labels(kind)


@functools.cache
def _requests(method: str, code: str) -> Any:
    return metrics.REQUESTS.labels(method, code)


@functools.cache
def _latency(method: str) -> Any:
    return metrics.LATENCY.labels(method)


def _count(a: Answer) -> Answer:
    _answers("cold_start" if a.items and a.items[0].reason == COLD_START else "personal").inc()
    return a


class RecommenderServicer(pb_grpc.RecommenderServicer):
    """`batcher` (micro-batching) answers Recommend when given; otherwise each call is scored
    alone. Both give the same answers (tests/unit/test_rec_batch.py)."""

    def __init__(self, state: SnapshotSource, engine: Engine, batcher: Batcher | None = None) -> None:
        self._state = state
        self._engine = engine
        self._batcher = batcher

    async def Recommend(self, request: pb.RecommendRequest, context: grpc.aio.ServicerContext) -> Any:
        r = request
        batcher = self._batcher

        def answer(snap: Snapshot) -> pb.RecommendResponse | Awaitable[pb.RecommendResponse]:
            query = Query(r.household_id, r.k, r.at_unix_ms, r.window_minutes, r.channel_ids, r.exclude_watched)
            if batcher is not None:
                return _batched(batcher, query)
            return to_proto(_count(recommend_one(self._engine, snap, query)))

        def fallback(snap: Snapshot) -> pb.RecommendResponse:
            a = self._engine.popular(snap, r.at_unix_ms, r.window_minutes, list(r.channel_ids), r.k)
            _answers("fallback").inc()
            return to_proto(a, FALLBACK)

        return await self._handle("Recommend", context, answer, fallback)

    async def SimilarProgrammes(self, request: pb.SimilarRequest, context: grpc.aio.ServicerContext) -> Any:
        r = request
        return await self._handle("SimilarProgrammes", context, lambda snap: to_proto(
            self._engine.similar(snap, r.content_id, r.k, r.at_unix_ms, list(r.channel_ids))))

    async def Popular(self, request: pb.PopularRequest, context: grpc.aio.ServicerContext) -> Any:
        r = request
        return await self._handle("Popular", context, lambda snap: to_proto(
            self._engine.popular(snap, r.at_unix_ms, r.window_minutes, list(r.channel_ids), r.k)))

    async def _handle(self, method: str, context: grpc.aio.ServicerContext,
                      call: Callable[[Snapshot], pb.RecommendResponse | Awaitable[pb.RecommendResponse]],
                      fallback: Callable[[Snapshot], pb.RecommendResponse] | None = None) -> Any:
        started = time.perf_counter()
        snap = self._state.snapshot  # one immutable model for the whole request
        code, message = grpc.StatusCode.OK, ""
        response = None
        try:
            result = call(snap)
            response = await result if inspect.isawaitable(result) else result
        except InvalidArgument as exc:
            code, message = grpc.StatusCode.INVALID_ARGUMENT, str(exc)
        except UnknownContent as exc:
            code, message = grpc.StatusCode.NOT_FOUND, str(exc)
        except Exception:
            log.exception("request failed", extra={"method": method, "model_version": snap.version})
            code, message = grpc.StatusCode.INTERNAL, "internal error"
            if fallback is not None:
                try:
                    response, code = fallback(snap), grpc.StatusCode.OK
                except Exception:
                    log.exception("fallback failed", extra={"method": method})
        _requests(method, code.name).inc()
        _latency(method).observe(time.perf_counter() - started)
        if code is not grpc.StatusCode.OK:
            await context.abort(code, message)
        return response


async def _batched(batcher: Batcher, query: Query) -> pb.RecommendResponse:
    return to_proto(_count(await batcher.recommend(query)))
