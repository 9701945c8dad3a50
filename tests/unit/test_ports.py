"""Free ports come from below the ephemeral range, never twice, and skip bound ones."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from stbcommon import ports


def test_ports_are_consecutive_outside_the_ephemeral_range_and_never_repeated() -> None:
    ephemeral_low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    blocks = [ports.free_ports(3) for _ in range(50)]
    for block in blocks:
        assert block == list(range(block[0], block[0] + 3))
        assert all(port < ephemeral_low for port in block)
    handed = [p for block in blocks for p in block]
    assert len(set(handed)) == len(handed)


def test_a_port_bound_in_tcp_or_udp_is_not_handed_out(monkeypatch: pytest.MonkeyPatch) -> None:
    for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
        with socket.socket(socket.AF_INET, kind) as taken:
            taken.bind(("127.0.0.1", 0))
            port = taken.getsockname()[1]
            monkeypatch.setattr(ports, "_candidate_range", lambda p=port: (p, p))
            with pytest.raises(OSError, match="no 1 consecutive free ports"):
                ports.free_ports(1)
        assert ports.free_ports(1) == [port]  # free again once released
