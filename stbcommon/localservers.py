"""Real mosquitto and clickhouse-server processes on free loopback ports in a folder.

Used by the test fixtures, `make demo` and the benchmarks: the same code starts the
servers everywhere. Both come from the OS packages (`scripts/install-servers.sh`).
"""

from __future__ import annotations

import getpass
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Self

from stbcommon.ports import free_port as free_port  # re-exported: the fixtures take it from here


class ServerError(RuntimeError):
    """A local server could not be started; the message carries its log tail."""


def _find(binary: str) -> str:
    path = shutil.which(binary) or next((p for p in (f"/usr/sbin/{binary}", f"/usr/bin/{binary}")
                                         if os.access(p, os.X_OK)), None)
    if path is None:
        raise ServerError(f"{binary} is not installed: run scripts/install-servers.sh (or `make test`)")
    return path


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


class _Process:
    """A server process we own: start, stop (SIGTERM), kill (SIGKILL), restart on the same ports."""

    name = "server"

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True)
        self.log_path = folder / f"{self.name}.out"
        self.proc: subprocess.Popen[bytes] | None = None

    def _command(self) -> list[str]:
        raise NotImplementedError

    def _ready(self) -> bool:
        raise NotImplementedError

    def start(self, timeout: float = 30.0) -> None:
        if self.is_running():
            return
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(self._command(), stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ServerError(f"{self.name} exited with {self.proc.returncode}:\n{self.log_tail()}")
            if self._ready():
                return
            time.sleep(0.05)
        self.kill()
        raise ServerError(f"{self.name} not ready after {timeout:.0f} s:\n{self.log_tail()}")

    def is_running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 30.0) -> None:
        if self.is_running():
            assert self.proc is not None
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()

    def kill(self) -> None:
        if self.is_running():
            assert self.proc is not None
            self.proc.kill()
            self.proc.wait(10)

    def log_tail(self, lines: int = 30) -> str:
        texts = []
        for path in sorted(self.folder.glob("*.out")) + sorted(self.folder.glob("*.log")):
            tail = path.read_text(errors="replace").splitlines()[-lines:]
            texts.append(f"--- {path.name}\n" + "\n".join(tail))
        return "\n".join(texts)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class Mosquitto(_Process):
    """mosquitto with persistence in `folder`, queues sized like deploy/mosquitto/collector.conf."""

    name = "mosquitto"

    def __init__(self, folder: Path, port: int | None = None, *,
                 max_queued_messages: int = 10_000_000, extra_config: str = "") -> None:
        super().__init__(folder)
        self.port = port or free_port()
        self.host = "127.0.0.1"
        self.config_path = folder / "mosquitto.conf"
        self.config_path.write_text(
            f"listener {self.port} 127.0.0.1\n"
            # As root, mosquitto would switch to its own user and lose access to `folder`.
            f"user {getpass.getuser()}\n"
            "allow_anonymous true\n"
            "persistence true\n"
            f"persistence_location {folder}/\n"
            "autosave_interval 60\n"
            f"max_queued_messages {max_queued_messages}\n"
            "max_queued_bytes 0\n"
            "max_inflight_messages 0\n"
            "message_size_limit 1048576\n"
            "max_keepalive 600\n"
            "log_type error\nlog_type warning\nlog_type notice\n"
            f"log_dest file {folder}/mosquitto.log\n"
            + extra_config
        )

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    def reload(self) -> None:
        """SIGHUP: mosquitto re-reads its ACL, password and CRL files."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGHUP)

    def _command(self) -> list[str]:
        return [_find("mosquitto"), "-c", str(self.config_path)]

    def _ready(self) -> bool:
        return _port_open(self.port)


class ClickHouseServer(_Process):
    """clickhouse-server (18.16 from Debian) with its data in `folder`."""

    name = "clickhouse"

    def __init__(self, folder: Path, tcp_port: int | None = None, *, users_xml: Path | None = None) -> None:
        """`users_xml`: a users file to use instead of the package's /etc/clickhouse-server/users.xml
        (its `users.d/*.xml` neighbours are merged into it, as on an installed server)."""
        super().__init__(folder)
        self.users_xml = users_xml
        self.host = "127.0.0.1"
        self.tcp_port = tcp_port or free_port()
        self.http_port = free_port()
        self.interserver_port = free_port()

    def url(self, database: str = "stb") -> str:
        return f"clickhouse://default@{self.host}:{self.tcp_port}/{database}"

    def _command(self) -> list[str]:
        d = self.folder
        for sub in ("data", "tmp", "user_files", "format_schemas"):
            (d / sub).mkdir(exist_ok=True)
        return [_find("clickhouse-server"), "--config-file=/etc/clickhouse-server/config.xml", "--",
                f"--path={d}/data/", f"--tmp_path={d}/tmp/", f"--user_files_path={d}/user_files/",
                f"--format_schema_path={d}/format_schemas/",
                f"--tcp_port={self.tcp_port}", f"--http_port={self.http_port}",
                f"--interserver_http_port={self.interserver_port}", "--listen_host=127.0.0.1",
                f"--logger.log={d}/clickhouse-server.log", f"--logger.errorlog={d}/clickhouse-server.err.log",
                "--logger.level=warning", "--mark_cache_size=268435456",
                *([f"--users_config={self.users_xml}"] if self.users_xml else [])]

    def _ready(self) -> bool:
        if not _port_open(self.tcp_port):
            return False
        from clickhouse_driver import Client
        from clickhouse_driver.errors import ServerException

        client = Client(self.host, port=self.tcp_port, connect_timeout=1)
        try:
            client.execute("SELECT 1")
            return True
        except ServerException:
            return True  # it answered: a locked-down `default` user is refused, yet the server is up
        except Exception:
            return False
        finally:
            client.disconnect()
