"""Authenticated gRPC on the real server: TLS with a test CA, bearer tokens, per-client methods."""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import numpy as np
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from benchmarks import serve_model
from proto import recommender_pb2 as pb
from proto import recommender_pb2_grpc as pb_grpc
from recommender.settings import DAY_MS
from stbcommon.localservers import free_port
from tests.integration.test_rec_grpc import Served, start_server

pytestmark = pytest.mark.integration
EPG_TOKEN = "epg-0123456789abcdef0123456789abcdef"
PORTAL_TOKEN = "portal-fedcba9876543210fedcba98765"
WRONG_TOKEN = "wrong-00000000000000000000000000000"
HOUSEHOLDS = 500


@dataclass(frozen=True)
class Pki:
    ca: bytes
    cert: Path
    key: Path
    client_cert: bytes
    client_key: bytes


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def make_pki(folder: Path) -> Pki:
    """A test CA and a server certificate for localhost / 127.0.0.1 signed by it."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder().subject_name(_name("test CA")).issuer_name(_name("test CA"))
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder().subject_name(_name("recommender")).issuer_name(ca.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    client_key = ec.generate_private_key(ec.SECP256R1())
    client = (x509.CertificateBuilder().subject_name(_name("epg")).issuer_name(ca.subject)
              .public_key(client_key.public_key()).serial_number(x509.random_serial_number())
              .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=1))
              .sign(ca_key, hashes.SHA256()))
    cert_path, key_path = folder / "server.crt", folder / "server.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(_pem_key(key))
    key_path.chmod(0o600)
    (folder / "ca.crt").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    return Pki(ca.public_bytes(serialization.Encoding.PEM), cert_path, key_path,
               client.public_bytes(serialization.Encoding.PEM), _pem_key(client_key))


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def write_tokens(path: Path, mode: int = 0o600) -> Path:
    path.write_text(f"# client token [methods]\nepg {EPG_TOKEN}\nportal {PORTAL_TOKEN} Popular,SimilarProgrammes\n")
    path.chmod(mode)
    return path


def synthetic_model(folder: Path) -> tuple[Path, int]:
    """A small published model whose guide covers now; (model dir, a time inside the guide)."""
    today = serve_model.Guide(start_ms=int(dt.datetime.now(dt.UTC).timestamp() * 1000) // DAY_MS * DAY_MS - DAY_MS,
                              days=3, channels=20)
    model_dir = folder / "models"
    serve_model.publish(model_dir, serve_model.users(np.random.default_rng(3), HOUSEHOLDS), 300, today, seed=5)
    return model_dir, today.start_ms + DAY_MS + 20 * 3_600_000


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Served, Pki, int]]:
    folder = tmp_path_factory.mktemp("rec-auth")
    pki = make_pki(folder)
    model_dir, at = synthetic_model(folder)
    tokens = write_tokens(folder / "tokens")
    down = f"clickhouse://default@127.0.0.1:{free_port()}/nowhere"  # serves from the artifact
    server = start_server(down, model_dir, folder, serve__tls_cert=str(pki.cert), serve__tls_key=str(pki.key),
                          serve__tokens_file=str(tokens), log__level="DEBUG")
    yield server, pki, at
    assert server.stop() == 0
    log = server.log.read_text()
    for secret in (EPG_TOKEN, PORTAL_TOKEN, WRONG_TOKEN):  # DEBUG logging on, every kind of call made
        assert secret not in log
    assert "call without a valid token" in log and "method not allowed" in log


@pytest.fixture
async def channel(secured: tuple[Served, Pki, int]) -> AsyncIterator[grpc.aio.Channel]:
    creds = grpc.ssl_channel_credentials(root_certificates=secured[1].ca)
    async with grpc.aio.secure_channel(secured[0].address, creds) as ch:
        yield ch


def bearer(token: str) -> tuple[tuple[str, str]]:
    return (("authorization", f"Bearer {token}"),)


async def test_valid_token_is_answered(channel: grpc.aio.Channel, secured: tuple[Served, Pki, int]) -> None:
    stub = pb_grpc.RecommenderStub(channel)
    r = await stub.Recommend(pb.RecommendRequest(household_id=7, k=5, at_unix_ms=secured[2]),
                             metadata=bearer(EPG_TOKEN), timeout=5)
    assert len(r.items) == 5 and r.items[0].reason.startswith("personal")


@pytest.mark.parametrize("metadata", [(), bearer(WRONG_TOKEN), (("authorization", EPG_TOKEN),),
                                      (("authorization", f"Basic {EPG_TOKEN}"),)])
async def test_missing_or_bad_token_is_unauthenticated(channel: grpc.aio.Channel, secured: tuple[Served, Pki, int],
                                                       metadata: tuple[tuple[str, str], ...]) -> None:
    stub = pb_grpc.RecommenderStub(channel)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.Recommend(pb.RecommendRequest(household_id=7, at_unix_ms=secured[2]), metadata=metadata, timeout=5)
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_client_rights(channel: grpc.aio.Channel, secured: tuple[Served, Pki, int]) -> None:
    stub = pb_grpc.RecommenderStub(channel)
    popular = await stub.Popular(pb.PopularRequest(at_unix_ms=secured[2], k=3), metadata=bearer(PORTAL_TOKEN))
    assert len(popular.items) == 3
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.Recommend(pb.RecommendRequest(household_id=7, at_unix_ms=secured[2]), metadata=bearer(PORTAL_TOKEN))
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED and "portal" in (err.value.details() or "")


async def test_health_is_open_and_reflection_is_not(channel: grpc.aio.Channel) -> None:
    r = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
    assert r.status == health_pb2.HealthCheckResponse.SERVING
    refl = reflection_pb2_grpc.ServerReflectionStub(channel)
    # Nothing written on the refused stream: the server refuses on the call's metadata alone. (Writing a
    # request raced the refusal: a write failing first surfaces as INTERNAL "Failed execute_batch",
    # seen once in five fresh-clone runs.)
    refused = refl.ServerReflectionInfo(timeout=10)
    assert await refused.code() == grpc.StatusCode.UNAUTHENTICATED
    names = [s.name async for resp in refl.ServerReflectionInfo(
        iter([reflection_pb2.ServerReflectionRequest(list_services="")]), metadata=bearer(EPG_TOKEN))
        for s in resp.list_services_response.service]
    assert "stb.recommender.v1.Recommender" in names


async def test_plaintext_client_cannot_talk_to_the_tls_port(secured: tuple[Served, Pki, int]) -> None:
    async with grpc.aio.insecure_channel(secured[0].address) as ch:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await pb_grpc.RecommenderStub(ch).Recommend(pb.RecommendRequest(household_id=7), timeout=3,
                                                        metadata=bearer(EPG_TOKEN))
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_unknown_ca_is_refused(secured: tuple[Served, Pki, int], tmp_path: Path) -> None:
    other = make_pki(tmp_path)
    async with grpc.aio.secure_channel(secured[0].address, grpc.ssl_channel_credentials(other.ca)) as ch:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await pb_grpc.RecommenderStub(ch).Recommend(pb.RecommendRequest(household_id=7), timeout=3,
                                                        metadata=bearer(EPG_TOKEN))
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE


def _serve_cli(tmp_path: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "recommender", "serve", "--model-dir", str(tmp_path / "none"),
                           "--listen", "127.0.0.1:0", "--metrics-port", "0", *flags],
                          capture_output=True, text=True, timeout=60, env={**os.environ, "OPENBLAS_NUM_THREADS": "1"})


def test_world_readable_secrets_are_refused_at_start(tmp_path: Path) -> None:
    tokens = write_tokens(tmp_path / "tokens", mode=0o644)
    pki = make_pki(tmp_path)
    pki.key.chmod(0o640)
    done = _serve_cli(tmp_path, "--tokens-file", str(tokens), "--tls-cert", str(pki.cert), "--tls-key", str(pki.key))
    assert done.returncode == 2
    assert f"chmod 600 {tokens}" in done.stderr and f"chmod 600 {pki.key}" in done.stderr
    assert EPG_TOKEN not in done.stderr + done.stdout


def test_malformed_tokens_file_names_the_line_not_the_token(tmp_path: Path) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text(f"epg {EPG_TOKEN}\nshort abc\nportal {PORTAL_TOKEN} Recommend,Nope\n")
    tokens.chmod(0o600)
    done = _serve_cli(tmp_path, "--tokens-file", str(tokens))
    assert done.returncode == 2
    assert "line 2" in done.stderr and "line 3" in done.stderr and "Nope" in done.stderr
    assert EPG_TOKEN not in done.stderr and PORTAL_TOKEN not in done.stderr and "abc" not in done.stderr


async def test_mutual_tls_requires_a_client_certificate(tmp_path: Path) -> None:
    pki = make_pki(tmp_path)
    model_dir, at = synthetic_model(tmp_path)
    down = f"clickhouse://default@127.0.0.1:{free_port()}/nowhere"
    server = start_server(down, model_dir, tmp_path, serve__tls_cert=str(pki.cert), serve__tls_key=str(pki.key),
                          serve__tls_client_ca=str(tmp_path / "ca.crt"))
    try:
        request = pb.RecommendRequest(household_id=7, k=3, at_unix_ms=at)
        with_cert = grpc.ssl_channel_credentials(pki.ca, pki.client_key, pki.client_cert)
        async with grpc.aio.secure_channel(server.address, with_cert) as ch:
            assert len((await pb_grpc.RecommenderStub(ch).Recommend(request, timeout=5)).items) == 3
        async with grpc.aio.secure_channel(server.address, grpc.ssl_channel_credentials(pki.ca)) as ch:
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await pb_grpc.RecommenderStub(ch).Recommend(request, timeout=5)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        assert server.stop() == 0
