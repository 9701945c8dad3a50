"""A local ClickHouse cluster: ZooKeeper and N shards x M replicas of clickhouse-server.

For the cluster tests and benchmarks (docs/DEPLOYMENT.md): every process runs from a folder
on free loopback ports, from the OS packages (`scripts/install-servers.sh`): ZooKeeper is
Debian's 3.8, run straight from its jar (the jar's manifest names its other jars) without
/etc/zookeeper, its admin web server off and a small heap. Each clickhouse-server reads a
copy of the packaged config with one file in its config.d: the cluster in `remote_servers`
(internal_replication, so a Distributed insert writes one replica and replication does
the rest), `zookeeper`, and the macros `{shard}` and `{replica}` the Replicated tables use.
"""

from __future__ import annotations

import os
import shutil
import socket
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Self

from stbcommon.localservers import ClickHouseServer, ServerError, _find, _Process, free_port

ZOOKEEPER_JAR = "/usr/share/java/zookeeper.jar"
PACKAGED_CONFIG = Path("/etc/clickhouse-server")


class ZooKeeper(_Process):
    """A standalone ZooKeeper with its data in `folder`."""

    name = "zookeeper"

    def __init__(self, folder: Path, port: int | None = None, *, heap_mb: int = 128) -> None:
        super().__init__(folder)
        self.host = "127.0.0.1"
        self.port = port or free_port()
        self.heap_mb = heap_mb

    def _command(self) -> list[str]:
        if not os.path.exists(ZOOKEEPER_JAR):
            raise ServerError("zookeeper is not installed: run scripts/install-servers.sh (or `make test`)")
        (self.folder / "data").mkdir(exist_ok=True)
        return [_find("java"), f"-Xmx{self.heap_mb}m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
                "-Dzookeeper.admin.enableServer=false", "-Dzookeeper.4lw.commands.whitelist=srvr",
                "-cp", ZOOKEEPER_JAR, "org.apache.zookeeper.server.ZooKeeperServerMain",
                str(self.port), str(self.folder / "data")]

    def _ready(self) -> bool:
        """Serving sessions, not only listening: `ruok` answers before the database is loaded, and
        ZooKeeper then drops a client's handshake (18.16 gives up on ZooKeeper for good)."""
        try:
            with socket.create_connection((self.host, self.port), timeout=0.5) as s:
                s.sendall(b"srvr")
                answer = b""
                while chunk := s.recv(4096):
                    answer += chunk
            return b"Mode: standalone" in answer
        except OSError:
            return False


class ClusterNode(ClickHouseServer):
    """clickhouse-server with `config_xml` (a `<yandex>` document) merged over the packaged config."""

    def __init__(self, folder: Path, config_xml: str, tcp_port: int | None = None) -> None:
        super().__init__(folder, tcp_port)
        self.config_xml = config_xml

    def _command(self) -> list[str]:
        etc = self.folder / "etc"
        (etc / "config.d").mkdir(parents=True, exist_ok=True)
        for name in ("config.xml", "users.xml"):
            shutil.copyfile(PACKAGED_CONFIG / name, etc / name)
        (etc / "config.d" / "cluster.xml").write_text(self.config_xml)
        return [f"--config-file={etc / 'config.xml'}" if arg.startswith("--config-file=") else arg
                for arg in super()._command()]

    def _ready(self) -> bool:
        """Up and talking to ZooKeeper: 18.16 crashes (NULL ZooKeeper session) on an ON CLUSTER
        statement that arrives before its session is established."""
        if not super()._ready():
            return False
        from clickhouse_driver import Client

        client = Client(self.host, port=self.tcp_port, connect_timeout=1)
        try:
            client.execute("SELECT count() FROM system.zookeeper WHERE path = '/'")
            return True
        except Exception:
            return False
        finally:
            client.disconnect()


class LocalCluster:
    """ZooKeeper and `shards` x `replicas` servers named `name` in `remote_servers`.

    `nodes[s][r]` is shard s+1's replica r+1. `url(db)` lists every node as an entry point."""

    def __init__(self, folder: Path, *, name: str = "stb", shards: int = 2, replicas: int = 2) -> None:
        self.name = name
        self.zookeeper = ZooKeeper(folder / "zookeeper")
        ports = [[free_port() for _ in range(replicas)] for _ in range(shards)]
        remote = "".join(
            "<shard><internal_replication>true</internal_replication>"
            + "".join(f"<replica><host>127.0.0.1</host><port>{p}</port></replica>" for p in shard)
            + "</shard>" for shard in ports)
        self.nodes: list[list[ClusterNode]] = []
        for s, shard in enumerate(ports, start=1):
            row = []
            for r, port in enumerate(shard, start=1):
                config = (
                    "<yandex>"
                    f"<remote_servers><{name}>{remote}</{name}></remote_servers>"
                    f"<zookeeper><node><host>127.0.0.1</host><port>{self.zookeeper.port}</port></node>"
                    "<session_timeout_ms>10000</session_timeout_ms></zookeeper>"
                    f"<macros><shard>{s}</shard><replica>r{s}_{r}</replica></macros>"
                    "<interserver_http_host>127.0.0.1</interserver_http_host>"
                    "<uncompressed_cache_size>67108864</uncompressed_cache_size>"
                    "<mark_cache_size>67108864</mark_cache_size>"
                    "</yandex>")
                row.append(ClusterNode(folder / f"ch{s}_{r}", config, port))
            self.nodes.append(row)

    @property
    def all_nodes(self) -> list[ClusterNode]:
        return [node for row in self.nodes for node in row]

    def url(self, database: str = "stb") -> str:
        hosts = ",".join(f"{n.host}:{n.tcp_port}" for n in self.all_nodes)
        return f"clickhouse://default@{hosts}/{database}?cluster={self.name}"

    def start(self, timeout: float = 60.0) -> None:
        """Start whatever is down (ZooKeeper first), the servers side by side."""
        self.zookeeper.start(timeout)
        with ThreadPoolExecutor(len(self.all_nodes)) as pool:
            list(pool.map(lambda node: node.start(timeout), self.all_nodes))

    def stop(self) -> None:
        for node in self.all_nodes:
            node.stop()
        self.zookeeper.stop()

    def kill(self) -> None:
        for node in self.all_nodes:
            node.kill()
        self.zookeeper.kill()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.kill()
