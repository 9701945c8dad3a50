"""Live recommendations for the household page, from the recommender's gRPC service.

A blocking call with a short deadline, run in a thread by the page: a slow or absent service
shows as a one-line note, never as a slow page. The bearer token is read from its file (mode 0600,
refused otherwise) and sent as `authorization: Bearer TOKEN` (docs/SECURITY.md).
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

import grpc

from console.settings import RecommenderSettings
from proto import recommender_pb2, recommender_pb2_grpc


@dataclass(frozen=True)
class Recs:
    model_version: str
    items: list[tuple[int, int, int, float, str]]  # programme, channel, start ms, score, reason


class RecommenderClient:
    def __init__(self, settings: RecommenderSettings) -> None:
        self.settings = settings
        self._metadata: tuple[tuple[str, str], ...] = ()
        if settings.token_file:
            path = Path(settings.token_file)
            if stat.S_IMODE(os.stat(path).st_mode) & 0o077:
                raise PermissionError(f"token file {path} can be read by other users: run chmod 600 {path}")
            self._metadata = (("authorization", f"Bearer {path.read_text().split()[0]}"),)
        if settings.tls_ca:
            creds = grpc.ssl_channel_credentials(Path(settings.tls_ca).read_bytes())
            self._channel = grpc.secure_channel(settings.address, creds)
        else:
            self._channel = grpc.insecure_channel(settings.address)
        self._stub = recommender_pb2_grpc.RecommenderStub(self._channel)

    def recommend(self, household_id: int, k: int = 10) -> Recs | str:
        """The recommendations, or why there are none (a short sentence)."""
        try:
            reply = self._stub.Recommend(recommender_pb2.RecommendRequest(household_id=household_id, k=k),
                                         timeout=self.settings.timeout_s, metadata=self._metadata)
        except grpc.RpcError as exc:
            code = exc.code() if isinstance(exc, grpc.Call) else None
            return f"recommender unavailable ({code.name if code else 'error'})"
        return Recs(reply.model_version, [(int(i.programme_id), int(i.channel_id), int(i.start_unix_ms),
                                           float(i.score), str(i.reason)) for i in reply.items])

    def close(self) -> None:
        self._channel.close()
