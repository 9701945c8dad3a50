"""Authenticated gRPC: TLS from PEM files and per-client bearer tokens, checked by an interceptor.

    [serve]
    tls_cert = "/etc/stb/recommender.crt"    # PEM chain; with tls_key: the port speaks TLS only
    tls_key = "/etc/stb/recommender.key"     # mode 0600
    tls_client_ca = ""                       # optional: also require client certificates (mTLS)
    tokens_file = "/etc/stb/recommender.tokens"

The tokens file (mode 0600, refused at start otherwise) has one client a line,
`CLIENT_NAME TOKEN [METHOD,...]`; blank lines and `#` comments are skipped. A client without
a methods column may call every method; with one, only those (`Recommend`,
`SimilarProgrammes`, `Popular`, `ServerReflectionInfo`, or a full `/package.Service/Method`).
Calls carry `authorization: Bearer TOKEN`: none or an unknown one is UNAUTHENTICATED, a known
client calling a method outside its list PERMISSION_DENIED. `grpc.health.v1.Health` is open
(load balancers probe it without credentials); everything else, reflection included, needs a
token once a tokens file is set.

Tokens are kept only as SHA-256 digests (a lookup of the digest, not of the secret) and never
logged: problems in the file name the line, denials name the client or the method.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import stat
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from recommender import metrics
from recommender.errors import RecommenderError
from recommender.settings import ServeSettings

log = logging.getLogger("recommender.auth")
OPEN_PREFIXES = ("/grpc.health.v1.Health/",)
SHORT_METHODS = {
    "Recommend": "/stb.recommender.v1.Recommender/Recommend",
    "SimilarProgrammes": "/stb.recommender.v1.Recommender/SimilarProgrammes",
    "Popular": "/stb.recommender.v1.Recommender/Popular",
    "ServerReflectionInfo": "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
}
MIN_TOKEN_CHARS = 16
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")
_FULL_METHOD = re.compile(r"^/[A-Za-z0-9_.]+/[A-Za-z0-9_]+$")


class AuthConfigError(RecommenderError):
    """The TLS or tokens files cannot be used; `problems` lists every one (no secret in them)."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class Client:
    name: str
    methods: frozenset[str] | None  # None: every method

    def allows(self, method: str) -> bool:
        return self.methods is None or method in self.methods


@dataclass(frozen=True)
class AuthConfig:
    """What `start_grpc` needs: server credentials (None: plaintext) and the token table."""

    credentials: grpc.ServerCredentials | None
    clients: dict[bytes, Client]   # sha256(token) -> client
    mtls: bool = False

    @property
    def tokens(self) -> bool:
        return bool(self.clients)


def digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def _private_file(path: str, what: str, problems: list[str]) -> bytes | None:
    """The file's bytes; a problem when it is missing or other users may read it."""
    try:
        mode = os.stat(path).st_mode
        data = Path(path).read_bytes()
    except OSError as exc:
        problems.append(f"{what} {path}: {exc.strerror or exc}")
        return None
    if mode & 0o077:
        problems.append(f"{what} {path} can be read by other users (mode {stat.S_IMODE(mode):04o}): "
                        f"chmod 600 {path}")
        return None
    return data


def _readable(path: str, what: str, problems: list[str]) -> bytes | None:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        problems.append(f"{what} {path}: {exc.strerror or exc}")
        return None


def parse_tokens(text: str, path: str = "tokens file") -> tuple[dict[bytes, Client], list[str]]:
    """(digest -> client, problems). Problems name the line, never the token."""
    clients: dict[bytes, Client] = {}
    names: set[str] = set()
    problems: list[str] = []
    for no, line in enumerate(text.splitlines(), 1):
        fields = line.split("#", 1)[0].split()
        if not fields:
            continue
        where = f"{path} line {no}"
        if len(fields) not in (2, 3):
            problems.append(f"{where}: expected CLIENT_NAME TOKEN [METHOD,...]")
            continue
        name, token = fields[0], fields[1]
        if not _NAME.match(name):
            problems.append(f"{where}: client name {name!r} is not [A-Za-z0-9_.@-]{{1,64}}")
        if len(token) < MIN_TOKEN_CHARS:
            problems.append(f"{where}: the token of {name} is shorter than {MIN_TOKEN_CHARS} characters")
        if name in names:
            problems.append(f"{where}: client {name} appears twice")
        methods: frozenset[str] | None = None
        if len(fields) == 3:
            wanted = [m for m in fields[2].split(",") if m]
            bad = [m for m in wanted if m not in SHORT_METHODS and not _FULL_METHOD.match(m)]
            if bad or not wanted:
                problems.append(f"{where}: unknown methods {', '.join(bad) or '(none)'} "
                                f"(known: {', '.join(SHORT_METHODS)} or /package.Service/Method)")
            methods = frozenset(SHORT_METHODS.get(m, m) for m in wanted)
        key = digest(token)
        if key in clients:
            problems.append(f"{where}: client {name} has the same token as {clients[key].name}")
        names.add(name)
        clients[key] = Client(name, methods)
    if not clients and not problems:
        problems.append(f"{path}: no clients (one `CLIENT_NAME TOKEN` a line)")
    return clients, problems


def load_auth(s: ServeSettings) -> AuthConfig:
    """Read and check the TLS and tokens files of `s`; AuthConfigError lists every problem."""
    problems: list[str] = []
    credentials = None
    if s.tls_cert and s.tls_key:
        cert = _readable(s.tls_cert, "tls_cert", problems)
        key = _private_file(s.tls_key, "tls_key", problems)
        ca = _readable(s.tls_client_ca, "tls_client_ca", problems) if s.tls_client_ca else None
        if cert is not None and key is not None and (ca is not None or not s.tls_client_ca):
            try:
                credentials = grpc.ssl_server_credentials([(key, cert)], root_certificates=ca,
                                                          require_client_auth=ca is not None)
            except Exception as exc:  # grpc validates lazily, but reports empty/garbled PEM here
                problems.append(f"tls_cert/tls_key: {exc}")
    clients: dict[bytes, Client] = {}
    if s.tokens_file:
        text = _private_file(s.tokens_file, "tokens_file", problems)
        if text is not None:
            clients, found = parse_tokens(text.decode(errors="replace"), s.tokens_file)
            problems += found
    if problems:
        raise AuthConfigError(problems)
    return AuthConfig(credentials, clients, mtls=bool(s.tls_client_ca))


def _bearer(metadata: Iterable[tuple[str, Any]] | None) -> str | None:
    for key, value in metadata or ():
        if key == "authorization":
            text = value.decode() if isinstance(value, bytes) else str(value)
            scheme, _, token = text.partition(" ")
            return token.strip() if scheme.lower() == "bearer" else None
    return None


class TokenAuth(grpc.aio.ServerInterceptor):
    """Checks `authorization: Bearer TOKEN` on every call but the health service's."""

    def __init__(self, clients: dict[bytes, Client]) -> None:
        self._clients = clients

    async def intercept_service(
            self, continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
            details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler:
        method: str = details.method
        if method.startswith(OPEN_PREFIXES):
            return await continuation(details)
        token = _bearer(details.invocation_metadata)
        client = self._clients.get(digest(token)) if token else None
        if client is None:
            metrics.AUTH_DENIED.labels("unauthenticated").inc()
            log.debug("call without a valid token", extra={"method": method, "token_given": token is not None})
            return _refusal(await continuation(details), grpc.StatusCode.UNAUTHENTICATED,
                            "a valid `authorization: Bearer TOKEN` is required")
        if not client.allows(method):
            metrics.AUTH_DENIED.labels("permission_denied").inc()
            log.debug("method not allowed", extra={"method": method, "client": client.name})
            return _refusal(await continuation(details), grpc.StatusCode.PERMISSION_DENIED,
                            f"client {client.name} may not call {method}")
        return await continuation(details)


def _refusal(handler: grpc.RpcMethodHandler | None, code: grpc.StatusCode, details: str) -> grpc.RpcMethodHandler:
    """A handler of the same streaming kind as `handler` that ends the call with `code`."""

    async def unary(request: Any, context: grpc.aio.ServicerContext) -> None:
        await context.abort(code, details)

    async def streaming(request: Any, context: grpc.aio.ServicerContext) -> Any:
        await context.abort(code, details)
        yield  # pragma: no cover - makes this an async generator; abort raises first

    if handler is None:
        return grpc.unary_unary_rpc_method_handler(unary)
    kw = {"request_deserializer": handler.request_deserializer,
          "response_serializer": handler.response_serializer}
    if handler.request_streaming and handler.response_streaming:
        return grpc.stream_stream_rpc_method_handler(streaming, **kw)
    if handler.request_streaming:
        return grpc.stream_unary_rpc_method_handler(unary, **kw)
    if handler.response_streaming:
        return grpc.unary_stream_rpc_method_handler(streaming, **kw)
    return grpc.unary_unary_rpc_method_handler(unary, **kw)
