"""A real Milvus standalone (PyPI ``milvus``) pinned to loopback and to explicit ports.

The stock launcher hops to other ports when one is busy and binds to the first
non-loopback address; two servers side by side, and quick restarts, need every
port and address fixed, and embedded etcd given its own configuration file.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

COMPONENTS = ("rootCoord", "proxy", "queryCoord", "queryNode", "indexNode", "dataCoord", "dataNode")
PORT_KEYS = (  # offsets from the gRPC port, in this order
    "proxy_port",
    "proxy_internal_port",
    "root_coord_port",
    "query_coord_port",
    "query_node_port",
    "index_coord_port",
    "index_node_port",
    "data_coord_port",
    "data_node_port",
    "etcd_port",
)
ETCD_PEER_OFFSET = len(PORT_KEYS)
METRICS_OFFSET = ETCD_PEER_OFFSET + 1
PORTS_USED = METRICS_OFFSET + 1


# What a server's crash leaves in its logs (Go's runtime: the error, the signal, the cgo call it
# arrived in), and what its components log as errors.
FATAL_MARKS = ("fatal error", "panic:", "[signal SIG", "SIGABRT", "out of memory", "_Cfunc_")
ERROR_MARKS = ('"level":"ERROR"', "[ERROR]")


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _ephemeral_floor(default: int = 32768) -> int:
    """The lowest port the kernel hands to outgoing connections (Linux: 32768-60999)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return default


def free_port_block(size: int = PORTS_USED + 8, start: int = 20000, stop: int | None = None) -> int:
    """First port of ``size`` consecutive free loopback ports (randomised start), below the
    kernel's ephemeral range by default: a server's or a client's outgoing connection takes its
    local port from that range, and can hold one a server binds later (a restart, the second
    server of a session) so that the server fails to start or hangs half up."""
    stop = stop or max(_ephemeral_floor(), start + 4 * size)
    span = stop - start - size
    first = start + (os.getpid() * 7919 + time.monotonic_ns()) % span
    for candidate in range(first, first + span, size):
        base = start + (candidate - start) % span
        if all(_port_free(base + i) for i in range(size)):
            return base
    raise RuntimeError("no block of free loopback ports")


QUICK_SETTINGS: dict[str, Any] = {
    # A test server's latencies, not a benchmark's: each flush waits out the segment assignments
    # (2 s by default) and each load waits on 1 s checker loops, ~6 s per collection a test loads.
    "dataCoord.segment.assignmentExpiration": 200,
    "queryCoord.checkInterval": 200,
    "queryCoord.checkSegmentInterval": 200,
    "queryCoord.checkChannelInterval": 200,
    "queryCoord.distPullInterval": 100,
}


def _unpack_binaries(base_dir: Path) -> None:
    """Hard-link the server's binaries into ``base_dir/bin`` from one unpacked copy per machine:
    the stock launcher unpacks ~250 MB of LZMA into every new data folder, 6-10 s a server."""
    import milvus

    cache = Path(tempfile.gettempdir()) / f"milvusdm-milvus-{milvus.__version__}"
    if not (cache / "bin").is_dir():
        staging = Path(tempfile.mkdtemp(prefix=cache.name + "-", dir=cache.parent))
        milvus._initialize_data_files(str(staging))  # also writes the checksums it compares on start
        try:
            staging.rename(cache)
        except OSError:  # another process unpacked it first
            shutil.rmtree(staging, ignore_errors=True)
    target = base_dir / "bin"
    target.mkdir(parents=True, exist_ok=True)
    for file in (cache / "bin").iterdir():
        if not (target / file.name).exists():
            try:
                os.link(file, target / file.name)
            except OSError:  # another filesystem
                shutil.copy2(file, target / file.name)


def _config_class(settings: dict[str, Any]) -> type[Any]:
    """The stock config, probing ports with SO_REUSEADDR so a restart survives TIME_WAIT, and
    writing ``settings`` (dotted milvus.yaml keys, also those its template leaves out)."""
    import yaml
    from milvus import MilvusServerConfig

    class Config(MilvusServerConfig):  # type: ignore[misc]  # milvus ships no type hints
        def write_config(self) -> None:
            super().write_config()
            path = Path(self.base_data_dir) / "configs" / "milvus.yaml"
            document = yaml.safe_load(path.read_text())
            for key, value in settings.items():
                *parents, last = key.split(".")
                node = document
                for parent in parents:
                    node = node.setdefault(parent, {})
                node[last] = value
            path.write_text(yaml.safe_dump(document))

        def try_bind_port(self, port: int) -> socket.socket | None:
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(("127.0.0.1", port))
                sock.listen()
            except OSError:
                sock.close()
                return None
            return sock

    return Config


@dataclass
class EmbeddedMilvus:
    """Start/stop one Milvus standalone server with data in ``base_dir``."""

    base_dir: Path
    port: int = field(default_factory=free_port_block)
    graceful_stop_seconds: int = 3
    authorization: bool = False  # then log in as root:Milvus
    tls_mode: int = 0  # 1: TLS, 2: mutual TLS (then plain clients are refused)
    tls_files: dict[str, Path] = field(default_factory=dict)  # server_pem_path, server_key_path, ca_pem_path
    settings: dict[str, Any] = field(default_factory=dict)  # milvus.yaml keys, e.g. QUICK_SETTINGS
    _server: Any = field(default=None, init=False, repr=False)  # a milvus.MilvusServer (untyped)

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _etcd_config(self) -> Path:
        client = self.port + PORT_KEYS.index("etcd_port")
        peer = self.port + ETCD_PEER_OFFSET
        path = self.base_dir / "etcd.yaml"
        path.write_text(
            f"name: milvusdm-test-{self.port}\n"
            f"data-dir: {self.base_dir / 'data' / 'etcd.data'}\n"
            f"listen-client-urls: http://127.0.0.1:{client}\n"
            f"advertise-client-urls: http://127.0.0.1:{client}\n"
            f"listen-peer-urls: http://127.0.0.1:{peer}\n"
            f"initial-advertise-peer-urls: http://127.0.0.1:{peer}\n"
            f"initial-cluster: milvusdm-test-{self.port}=http://127.0.0.1:{peer}\n"
            "log-level: warn\n"
        )
        return path

    def start(self, timeout: float = 120) -> EmbeddedMilvus:
        from milvus import MilvusServer

        self.base_dir.mkdir(parents=True, exist_ok=True)
        _unpack_binaries(self.base_dir)
        ports = {key: self.port + offset for offset, key in enumerate(PORT_KEYS)}
        config = _config_class(self.settings)(data_dir=str(self.base_dir), **ports)
        for component in COMPONENTS:
            config.set(f"{component}.ip", "127.0.0.1")
        config.set("common.gracefulStopTimeout", self.graceful_stop_seconds)
        config.set("authorization_enabled", self.authorization)
        if self.tls_mode:
            config.set("tls_mode", self.tls_mode)
            for key, path in self.tls_files.items():
                config.set(key, str(path))
        server = MilvusServer(config, wait_for_started=False)
        server.webservice_port = self.port + METRICS_OFFSET
        previous = os.environ.get("ETCD_CONFIG_PATH")
        os.environ["ETCD_CONFIG_PATH"] = str(self._etcd_config())
        try:
            server.start()
        finally:
            if previous is None:
                os.environ.pop("ETCD_CONFIG_PATH")
            else:
                os.environ["ETCD_CONFIG_PATH"] = previous
        self._server = server
        self._wait_healthy(server, timeout)
        return self

    def _wait_healthy(self, server: Any, timeout: float) -> None:
        url = f"http://127.0.0.1:{server.webservice_port}/healthz"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if server.server_proc.poll() is not None:
                raise RuntimeError(f"Milvus exited early; logs in {self.base_dir / 'logs'}")
            try:
                with urllib.request.urlopen(url, timeout=2) as resp:
                    if b"OK" in resp.read() and self.serving():
                        return
            except OSError:
                pass
            time.sleep(0.2)
        self.stop()
        raise TimeoutError(f"Milvus not healthy within {timeout:.0f}s; logs in {self.base_dir / 'logs'}")

    @property
    def pid(self) -> int | None:
        """The server process (benchmarks read its CPU time)."""
        return self._server.server_proc.pid if self.alive else None

    @property
    def alive(self) -> bool:
        return self._server is not None and self._server.server_proc.poll() is None

    def serving(self, timeout: float = 5) -> bool:
        """Alive and accepting connections on its gRPC port: a server can hang with its
        process up and its proxy gone."""
        if not self.alive:
            return False
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=timeout).close()
        except OSError:
            return False
        return True

    def crash_lines(self, limit: int = 12) -> list[str]:
        """The lines of its logs that say why it stopped: a crash's first (the fatal error, its
        signal, the call into C it came from) if it crashed, else its last error lines."""
        fatal: list[str] = []
        errors: list[str] = []
        for log in sorted((self.base_dir / "logs").glob("*.log")):
            with log.open(errors="replace") as lines:
                for line in lines:
                    if any(mark in line for mark in FATAL_MARKS):
                        fatal.append(f"{log.name}: {line.strip()[:300]}")
                    elif any(mark in line for mark in ERROR_MARKS):
                        errors.append(f"{log.name}: {line.strip()[:300]}")
        return fatal[:limit] or errors[-limit:]

    def restart(self, timeout: float = 120) -> EmbeddedMilvus:
        """Start a server that died or hung again, with fresh data (a crash must not take every
        later test of a session down with it; the dead server's sessions in its etcd would hold a
        restart back until they expire), on new ports: gRPC keeps a channel to the old address
        in reconnect backoff (up to 120 s after the retries of a run that met the crash), and
        pymilvus shares that channel with every new client of the same address. Its logs and
        data move to ``crashed-N`` first: the launcher truncates the logs on start, and they hold
        why it stopped."""
        self.stop()
        kept = 1
        while (self.base_dir / f"crashed-{kept}").exists():
            kept += 1
        crashed = self.base_dir / f"crashed-{kept}"
        crashed.mkdir()
        for name in ("logs", "data"):
            if (self.base_dir / name).is_dir():
                (self.base_dir / name).rename(crashed / name)
        (self.base_dir / "logs").mkdir()
        old = self.port
        while self.port == old:
            self.port = free_port_block()
        return self.start(timeout)

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None or server.server_proc is None:
            return
        proc: subprocess.Popen[bytes] = server.server_proc
        proc.terminate()
        try:
            proc.wait(timeout=self.graceful_stop_seconds + 15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        server.server_proc = None
        server.stop()  # closes its log files

    def __enter__(self) -> EmbeddedMilvus:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
