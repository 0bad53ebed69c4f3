"""Fetch, start, stop and inspect a local Kafka broker (KRaft) for development and tests: a single
node, or a cluster of several (`--brokers 3`) to try replication and broker failures.

When KAFKA_BOOTSTRAP_SERVERS names an existing cluster, nothing is fetched, started or stopped.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import fcntl
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

import structlog

from deploy.kafka import secure as secure_listener
from services import runtime

KAFKA_VERSION = "4.1.1"

log = structlog.get_logger(__name__)

_HERE = Path(__file__).resolve().parent
_OR_EXTERNAL = "or set KAFKA_BOOTSTRAP_SERVERS to an existing cluster"
_JAVA_HINT = f"install it (Debian: apt-get install openjdk-17-jre-headless) {_OR_EXTERNAL}"
# Popen objects of brokers spawned by this process, kept so that they can be reaped
# (an unreaped child stays a zombie and would look alive to os.kill(pid, 0)).
_children: dict[int, subprocess.Popen[bytes]] = {}
# Every local broker: a publish before `concord topics create` must fail, not make a one-partition
# topic that the key-to-partition rule then disagrees with.
NO_AUTO_CREATE = {"auto.create.topics.enable": "false"}


class KafkaSetupError(Exception):
    """The local broker cannot be fetched, started or reached; the message says what to do."""


class _Files(NamedTuple):
    data: Path
    props: Path
    pid: Path
    log: Path
    lock: Path


def uses_external_cluster() -> bool:
    return bool(runtime.config().kafka_bootstrap_servers.strip())


def _env_port(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        raise KafkaSetupError(f"{name} must be a TCP port number from 1 to 65535, not {raw!r}.")
    return int(raw)


def bootstrap_servers() -> str:
    """The brokers the hub's processes use (services/runtime.py); a bad port is a setup error."""
    try:
        return runtime.bootstrap_servers()
    except ValueError as exc:
        raise KafkaSetupError(str(exc)) from exc


def _port() -> int:
    try:
        return runtime.local_kafka_port()
    except ValueError as exc:
        raise KafkaSetupError(str(exc)) from exc


def _controller_port() -> int:
    return _env_port("CONCORD_KAFKA_CONTROLLER_PORT", _port() + 1)


def _kafka_dir() -> Path:
    return runtime.config().cache_dir.expanduser().resolve() / "kafka"


def _lib_dir() -> Path:
    return _kafka_dir() / KAFKA_VERSION / "libs"


def _files(port: int) -> _Files:
    # Jars are shared; everything else is per port so that brokers on different ports coexist.
    base = _kafka_dir()
    return _Files(
        data=base / f"data-{port}",
        props=base / f"server-{port}.properties",
        pid=base / f"kafka-{port}.pid",
        log=base / f"kafka-{port}.log",
        lock=base / f"kafka-{port}.lock",
    )


def server_properties(port: int, controller_port: int, data_dir: Path) -> str:
    """Broker and controller in one process, reachable only from this machine."""
    settings = {
        "process.roles": "broker,controller",
        "node.id": "1",
        # `StorageTool format --standalone` needs the bootstrap form, not controller.quorum.voters.
        "controller.quorum.bootstrap.servers": f"127.0.0.1:{controller_port}",
        "listeners": f"PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}",
        "advertised.listeners": f"PLAINTEXT://127.0.0.1:{port}",
        "controller.listener.names": "CONTROLLER",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "inter.broker.listener.name": "PLAINTEXT",
        "log.dirs": str(data_dir),
        # One broker: internal topics cannot have more than one replica.
        "offsets.topic.replication.factor": "1",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "group.initial.rebalance.delay.ms": "0",
        "num.partitions": "1",
        **NO_AUTO_CREATE,
    }
    return "".join(f"{key}={value}\n" for key, value in settings.items())


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    # Parallel test sessions may call start() together; only one may spawn a broker per port.
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def _tail(text: str, lines: int = 15) -> str:
    return "\n".join(re.sub(r"\x1b\[[0-9;]*m", "", text).strip().splitlines()[-lines:])


def fetch() -> Path:
    libs = _lib_dir()
    marker = libs / f"kafka_2.13-{KAFKA_VERSION}.jar"
    if marker.is_file():
        return libs
    mvn = shutil.which("mvn")
    if mvn is None:
        raise KafkaSetupError(
            "Maven (mvn) is needed to fetch the Kafka jars: install it "
            f"(Debian: apt-get install maven) {_OR_EXTERNAL}."
        )
    with _locked(libs.parent / "fetch.lock"):
        if marker.is_file():  # another process fetched them while we waited
            return libs
        partial = libs.with_name("libs.partial")
        shutil.rmtree(partial, ignore_errors=True)
        cmd = [mvn, "-B", "-q", "-Dstyle.color=never"]
        cmd += shlex.split(runtime.config().maven_opts)
        cmd += ["-f", str(_HERE / "pom.xml"), "dependency:copy-dependencies"]
        cmd += [f"-DoutputDirectory={partial}", "-DincludeScope=runtime"]
        cmd += [f"-Dkafka.version={KAFKA_VERSION}"]
        log.info("kafka.fetch", version=KAFKA_VERSION, into=str(libs))
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if done.returncode != 0 or not (partial / marker.name).is_file():
            raise KafkaSetupError(
                f"Maven could not fetch the Kafka {KAFKA_VERSION} jars (exit {done.returncode}); "
                f"its last output:\n{_tail(done.stdout + done.stderr)}"
            )
        # Renaming a complete directory means a half-finished fetch never looks usable.
        shutil.rmtree(libs, ignore_errors=True)
        partial.rename(libs)
    return libs


def _java() -> str:
    java = shutil.which("java")
    if java is None:
        raise KafkaSetupError(
            f"Java 17 or newer is needed to run the local Kafka broker: {_JAVA_HINT}."
        )
    out = subprocess.run([java, "-version"], capture_output=True, text=True, check=False)
    found = re.search(r'version "(\d+)(?:\.(\d+))?', out.stderr + out.stdout)
    if found:
        major = int(found[2] or 0) if found[1] == "1" else int(found[1])  # "1.8.0" is Java 8
        if major < 17:
            raise KafkaSetupError(
                f"Java 17 or newer is needed to run the local Kafka broker, but {java} is "
                f"Java {major}: {_JAVA_HINT}."
            )
    return java


def _jvm(java: str, libs: Path) -> list[str]:
    return [java, "-cp", f"{libs}/*", f"-Dlog4j2.configurationFile={_HERE / 'log4j2.yaml'}"]


def _new_cluster_id() -> str:
    # Same format as `StorageTool random-uuid` (URL-safe base64 of 16 random bytes) without a JVM.
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):  # would read as a command-line flag
            return cluster_id


def _format_storage(java: str, libs: Path, files: _Files, extra: Sequence[str] = ()) -> None:
    if (files.data / "meta.properties").is_file():
        return  # formatted before: keeps its cluster id and topics
    cmd = [*_jvm(java, libs), "kafka.tools.StorageTool", "format", "-t", _new_cluster_id()]
    cmd += ["-c", str(files.props), "--standalone", *extra]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise KafkaSetupError(
            f"Formatting Kafka storage in {files.data} failed:\n{_tail(done.stdout + done.stderr)}"
        )


def _alive(pid: int) -> bool:
    child = _children.get(pid)
    if child is not None:
        # Trust poll() for our own children: right after exec their cmdline can still read empty.
        if child.poll() is None:
            return True
        del _children[pid]
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    # A recycled pid may belong to another program, and a broker that exited but is not yet
    # reaped by the process that started it lingers as a zombie.
    with contextlib.suppress(OSError, IndexError):
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        return state != "Z" and (not cmdline or b"kafka.Kafka" in cmdline)
    return True


def _running_pid(pid_file: Path) -> int | None:
    with contextlib.suppress(OSError, ValueError):
        pid = int(pid_file.read_text().strip())
        if _alive(pid):
            return pid
    return None


def _listening(host: str, port: int, timeout_s: float = 0.5) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=timeout_s):
        return True
    return False


def _answers(bootstrap: str, timeout_s: float = 3.0, client: Mapping[str, str] = {}) -> bool:
    host, _, port = bootstrap.rpartition(":")
    if not _listening(host, int(port)):
        return False  # spares kafka-python's connection-refused warnings while the JVM boots
    from kafka.admin import KafkaAdminClient
    from kafka.errors import KafkaError

    ms = int(timeout_s * 1000)
    try:
        admin = KafkaAdminClient(
            bootstrap_servers=bootstrap, request_timeout_ms=ms, bootstrap_timeout_ms=ms, **client
        )
    except (KafkaError, OSError):
        return False
    try:
        return bool(admin.describe_cluster().get("brokers"))
    except (KafkaError, OSError):
        return False
    finally:
        admin.close()


def _wait_until_ready(
    bootstrap: str, pid: int, log_file: Path, timeout_s: float, client: Mapping[str, str] = {}
) -> None:
    deadline = time.monotonic() + timeout_s
    while not _answers(bootstrap, client=client):
        if not _alive(pid):
            tail = _tail(log_file.read_text(errors="replace")) if log_file.is_file() else ""
            raise KafkaSetupError(
                f"The local Kafka broker exited while starting; see {log_file}, which ends:\n{tail}"
            )
        if time.monotonic() > deadline:
            raise KafkaSetupError(
                f"The local Kafka broker did not answer on {bootstrap} within {timeout_s:g} s; "
                f"see {log_file}."
            )
        time.sleep(0.25)


def _wait_gone(pid: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while _alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def _terminate(pid: int, timeout_s: float) -> None:
    # SIGTERM lets Kafka flush and close its logs, so the next start skips log recovery.
    for sig, wait_s in ((signal.SIGTERM, timeout_s), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
        if _wait_gone(pid, wait_s):
            return
        log.warning("kafka.stop_slow", pid=pid, signal=sig.name)


def start(timeout_s: float = 90.0, *, secure: bool = False) -> str:
    """Start the local broker (with `secure`, its SASL_SSL listener: `secure_start`)."""
    bootstrap = bootstrap_servers()
    if uses_external_cluster():
        log.info("kafka.external", bootstrap=bootstrap)
        return bootstrap
    port, controller_port = _port(), _controller_port()
    files = _secure_files(port) if secure else _files(port)
    client = secure_listener.client_options(_secure_dir(port)) if secure else {}
    with _locked(files.lock):
        pid = _running_pid(files.pid)
        if pid is not None:
            _wait_until_ready(bootstrap, pid, files.log, timeout_s, client)
            return bootstrap
        for taken in (port, controller_port):
            if _listening("127.0.0.1", taken):
                raise KafkaSetupError(
                    f"Port {taken} on 127.0.0.1 is already in use by another program: stop it, "
                    "choose other ports with CONCORD_KAFKA_PORT and CONCORD_KAFKA_CONTROLLER_PORT, "
                    "or point KAFKA_BOOTSTRAP_SERVERS at that broker."
                )
        java = _java()
        libs = fetch()
        properties = server_properties(port, controller_port, files.data)
        users: list[str] = []
        if secure:
            properties, users = _secure_properties(properties, port, controller_port)
        files.props.write_text(properties)
        files.props.chmod(0o600)  # the secure broker's holds its own SCRAM password
        _format_storage(java, libs, files, users)
        heap = os.environ.get("CONCORD_KAFKA_HEAP", "").strip() or "1g"
        cmd = [*_jvm(java, libs), f"-Xmx{heap}", "kafka.Kafka", str(files.props)]
        with files.log.open("wb") as out:
            child = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=files.data.parent,
                start_new_session=True,  # Ctrl-C in the starting terminal must not reach the broker
            )
        _children[child.pid] = child
        files.pid.write_text(f"{child.pid}\n")
        log.info("kafka.starting", pid=child.pid, bootstrap=bootstrap, log=str(files.log))
        try:
            _wait_until_ready(bootstrap, child.pid, files.log, timeout_s, client)
        except KafkaSetupError:
            _terminate(child.pid, 10.0)  # a broker that failed to start must not linger
            files.pid.unlink(missing_ok=True)
            raise
    log.info("kafka.started", pid=child.pid, bootstrap=bootstrap)
    return bootstrap


# --- the secure listener (deploy/kafka/secure.py): its own data and properties, same pid file ---


def _secure_dir(port: int) -> secure_listener.SecureFiles:
    return secure_listener.ensure_files(_kafka_dir() / f"secure-{port}")


def _secure_files(port: int) -> _Files:
    # Its own storage (its users are written in when formatted); the pid, log and lock are the
    # port's, so `stop` and `status` find the broker on the port whichever kind it is.
    base = _kafka_dir()
    return _files(port)._replace(
        data=base / f"data-secure-{port}", props=base / f"server-secure-{port}.properties"
    )


def _secure_properties(plain: str, port: int, controller_port: int) -> tuple[str, list[str]]:
    """The broker's properties with the SASL_SSL listener, and the format arguments that
    create its SCRAM users."""
    files = _secure_dir(port)
    settings = dict(line.split("=", 1) for line in plain.splitlines() if "=" in line)
    settings |= secure_listener.listener_properties(port, controller_port, files)
    properties = "".join(f"{key}={value}\n" for key, value in settings.items())
    return properties, secure_listener.scram_users(files)


def secure_client_settings() -> dict[str, str]:
    """The settings a client of the local secure broker sets (printed by `start --secure`)."""
    return secure_listener.client_settings(_secure_dir(_port()))


def stop(timeout_s: float = 30.0) -> bool:
    if uses_external_cluster():
        log.info("kafka.external_not_stopped", bootstrap=bootstrap_servers())
        return False
    files = _files(_port())
    if not files.pid.is_file():
        return False
    with _locked(files.lock):
        pid = _running_pid(files.pid)
        files.pid.unlink(missing_ok=True)
        if pid is None:
            return False
        _terminate(pid, timeout_s)
    log.info("kafka.stopped", pid=pid)
    return True


def status() -> dict[str, object]:
    """`version` is the pinned local broker version, also when an external cluster is used."""
    bootstrap = bootstrap_servers()
    pid: int | None = None
    log_file: str | None = None
    if uses_external_cluster():  # a TCP connect only: the cluster may need credentials
        host, _, port = bootstrap.split(",", maxsplit=1)[0].rpartition(":")
        running = port.isdigit() and _listening(host, int(port), timeout_s=1.0)
    else:
        files = _files(_port())
        pid, log_file = _running_pid(files.pid), str(files.log)
        running = pid is not None
    return {
        "bootstrap": bootstrap,
        "external": uses_external_cluster(),
        "running": running,
        "pid": pid,
        "version": KAFKA_VERSION,
        "log": log_file,
    }


# --- a local cluster of several nodes (`concord kafka start --brokers 3`) ---
#
# Each node is a broker and a KRaft controller in one JVM; the controllers form one static
# quorum, so the cluster stays writable (acks=all, min.insync.replicas 2) with one node down.

CLUSTER_HEAP = "384m"  # per node: three JVMs share a small machine with the hub's processes


class Node(NamedTuple):
    """One node of the local cluster: its id, client and controller ports, and its files."""

    node_id: int
    port: int
    controller_port: int
    files: _Files

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"


def _cluster_dir() -> Path:
    return _kafka_dir() / f"cluster-{_port()}"


def _cluster_brokers() -> int | None:
    """How many nodes the cluster on CONCORD_KAFKA_PORT was made with; None if there is none."""
    with contextlib.suppress(OSError, ValueError, KeyError):
        return int(json.loads((_cluster_dir() / "cluster.json").read_text())["brokers"])
    return None


def cluster_nodes(brokers: int | None = None) -> list[Node]:
    """The nodes: client ports from CONCORD_KAFKA_PORT up, controller ports from
    CONCORD_KAFKA_CONTROLLER_PORT (default: just above the client ports) up."""
    count = brokers or _cluster_brokers() or 3
    port = _port()
    controller = _env_port("CONCORD_KAFKA_CONTROLLER_PORT", port + count)
    base = _cluster_dir()
    return [
        Node(
            n,
            port + n - 1,
            controller + n - 1,
            _Files(
                data=base / f"data-{n}",
                props=base / f"server-{n}.properties",
                pid=base / f"kafka-{n}.pid",
                log=base / f"kafka-{n}.log",
                lock=base / "cluster.lock",
            ),
        )
        for n in range(1, count + 1)
    ]


def cluster_bootstrap(nodes: list[Node]) -> str:
    """Every node's address: a client that knows them all can start while one is down."""
    return ",".join(node.bootstrap for node in nodes)


def cluster_properties(node: Node, nodes: list[Node]) -> str:
    """One node of the cluster: broker and controller, with replication defaults for its size."""
    size = len(nodes)
    in_sync = str(max(1, size - 1))  # one replica may be down and writes still go on
    settings = {
        "process.roles": "broker,controller",
        "node.id": str(node.node_id),
        "controller.quorum.voters": ",".join(
            f"{n.node_id}@127.0.0.1:{n.controller_port}" for n in nodes
        ),
        "listeners": f"PLAINTEXT://{node.bootstrap},CONTROLLER://127.0.0.1:{node.controller_port}",
        "advertised.listeners": f"PLAINTEXT://{node.bootstrap}",
        "controller.listener.names": "CONTROLLER",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "inter.broker.listener.name": "PLAINTEXT",
        "log.dirs": str(node.files.data),
        "default.replication.factor": str(size),
        "min.insync.replicas": in_sync,
        "offsets.topic.replication.factor": str(size),
        "transaction.state.log.replication.factor": str(size),
        "transaction.state.log.min.isr": in_sync,
        "unclean.leader.election.enable": "false",  # never elect a replica that lost writes
        "group.initial.rebalance.delay.ms": "0",
        "num.partitions": "1",
        **NO_AUTO_CREATE,
    }
    return "".join(f"{key}={value}\n" for key, value in settings.items())


def _format_nodes(java: str, libs: Path, nodes: list[Node], cluster_id: str) -> None:
    # Nodes formatted before keep their cluster id and topics; the others are formatted at once
    # (a JVM each, about ten seconds) with the cluster's one id.
    tool = [*_jvm(java, libs), "kafka.tools.StorageTool", "format", "-t", cluster_id, "-c"]
    formats = {
        node: subprocess.Popen(
            [*tool, str(node.files.props)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for node in nodes
        if not (node.files.data / "meta.properties").is_file()
    }
    for node, process in formats.items():
        output, _ = process.communicate()
        if process.returncode != 0:
            raise KafkaSetupError(
                f"Formatting Kafka storage in {node.files.data} failed:\n{_tail(output)}"
            )


def _spawn_node(java: str, libs: Path, node: Node) -> int:
    heap = os.environ.get("CONCORD_KAFKA_HEAP", "").strip() or CLUSTER_HEAP
    cmd = [*_jvm(java, libs), f"-Xmx{heap}", f"-Xms{heap}", "kafka.Kafka", str(node.files.props)]
    with node.files.log.open("wb") as out:
        child = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=node.files.data.parent,
            start_new_session=True,
        )
    _children[child.pid] = child
    node.files.pid.write_text(f"{child.pid}\n")
    log.info("kafka.node_starting", node=node.node_id, pid=child.pid, log=str(node.files.log))
    return child.pid


def _cluster_size(bootstrap: str) -> int:
    """Brokers the cluster reports through one node; 0 when it does not answer."""
    host, _, port = bootstrap.rpartition(":")
    if not _listening(host, int(port)):
        return 0
    from kafka.admin import KafkaAdminClient
    from kafka.errors import KafkaError

    try:
        admin = KafkaAdminClient(
            bootstrap_servers=bootstrap, request_timeout_ms=3000, bootstrap_timeout_ms=3000
        )
    except (KafkaError, OSError):
        return 0
    try:
        return len(admin.describe_cluster().get("brokers") or ())
    except (KafkaError, OSError):
        return 0
    finally:
        admin.close()


def _wait_cluster(nodes: list[Node], pids: dict[int, int], timeout_s: float) -> None:
    """Until every node answers and counts every broker; a node that dies names its log."""
    deadline = time.monotonic() + timeout_s
    waiting = list(nodes)
    while waiting:
        for node in list(waiting):
            if not _alive(pids[node.node_id]):
                log_file = node.files.log
                tail = _tail(log_file.read_text(errors="replace")) if log_file.is_file() else ""
                raise KafkaSetupError(
                    f"Kafka node {node.node_id} exited while starting; see {log_file}, "
                    f"which ends:\n{tail}"
                )
            if _cluster_size(node.bootstrap) >= len(nodes):
                waiting.remove(node)
        if waiting and time.monotonic() > deadline:
            raise KafkaSetupError(
                f"Kafka node(s) {', '.join(str(n.node_id) for n in waiting)} did not join the "
                f"cluster within {timeout_s:g} s; see their logs in {_cluster_dir()}."
            )
        if waiting:
            time.sleep(0.5)


def start_cluster(brokers: int = 3, timeout_s: float = 180.0) -> str:
    """Start (or find running) a cluster of `brokers` nodes; every node's address, comma-separated."""
    if uses_external_cluster():
        log.info("kafka.external", bootstrap=bootstrap_servers())
        return bootstrap_servers()
    if brokers < 1:
        raise KafkaSetupError(f"A cluster needs at least one broker, not {brokers}.")
    made_with = _cluster_brokers()
    if made_with is not None and made_with != brokers:
        raise KafkaSetupError(
            f"The local cluster in {_cluster_dir()} was made with {made_with} brokers: start it "
            f"with --brokers {made_with}, or stop it and delete that directory for a new one."
        )
    nodes = cluster_nodes(brokers)
    base = _cluster_dir()
    base.mkdir(parents=True, exist_ok=True)
    with _locked(base / "cluster.lock"):
        pids = {n.node_id: pid for n in nodes if (pid := _running_pid(n.files.pid)) is not None}
        to_start = [n for n in nodes if n.node_id not in pids]
        for node in to_start:
            for taken in (node.port, node.controller_port):
                if _listening("127.0.0.1", taken):
                    raise KafkaSetupError(
                        f"Port {taken} on 127.0.0.1 is already in use by another program: stop "
                        "it or choose other ports with CONCORD_KAFKA_PORT and "
                        "CONCORD_KAFKA_CONTROLLER_PORT."
                    )
        if to_start:
            java, libs = _java(), fetch()
            settings = base / "cluster.json"
            if not settings.is_file():
                cluster = {"brokers": brokers, "cluster_id": _new_cluster_id()}
                settings.write_text(json.dumps(cluster) + "\n")
            cluster_id = json.loads(settings.read_text())["cluster_id"]
            for node in to_start:
                node.files.props.write_text(cluster_properties(node, nodes))
            _format_nodes(java, libs, to_start, cluster_id)
            for node in to_start:
                pids[node.node_id] = _spawn_node(java, libs, node)
        try:
            _wait_cluster(nodes, pids, timeout_s)
        except KafkaSetupError:
            for node in to_start:  # nodes that failed to start must not linger
                _terminate(pids[node.node_id], 10.0)
                node.files.pid.unlink(missing_ok=True)
            raise
    bootstrap = cluster_bootstrap(nodes)
    log.info("kafka.cluster_started", brokers=brokers, bootstrap=bootstrap)
    return bootstrap


def start_node(node_id: int, timeout_s: float = 120.0) -> None:
    """Start one stopped node of the cluster again (after a crash) and wait until it has joined."""
    nodes = cluster_nodes()
    [node] = [n for n in nodes if n.node_id == node_id]
    with _locked(node.files.lock):
        pid = _running_pid(node.files.pid)
        if pid is None:
            pid = _spawn_node(_java(), fetch(), node)
        _wait_cluster([node], {node_id: pid}, timeout_s)


def stop_cluster(timeout_s: float = 30.0) -> bool:
    """Stop every node of the cluster on CONCORD_KAFKA_PORT; False when none was running."""
    if uses_external_cluster() or _cluster_brokers() is None:
        return False
    nodes = cluster_nodes()
    with _locked(nodes[0].files.lock):
        pids = [pid for node in nodes if (pid := _running_pid(node.files.pid)) is not None]
        for node in nodes:
            node.files.pid.unlink(missing_ok=True)
        for pid in pids:  # all at once: each flushes its logs while the others do
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        for pid in pids:
            _terminate(pid, timeout_s)
    if pids:
        log.info("kafka.cluster_stopped", brokers=len(nodes))
    return bool(pids)


def cluster_status() -> dict[str, object] | None:
    """Each node of the local cluster (pid, running, ports, log); None when there is no cluster."""
    if uses_external_cluster() or _cluster_brokers() is None:
        return None
    nodes = cluster_nodes()
    rows = []
    for node in nodes:
        pid = _running_pid(node.files.pid)
        rows.append(
            {
                "node": node.node_id,
                "bootstrap": node.bootstrap,
                "controller_port": node.controller_port,
                "running": pid is not None,
                "pid": pid,
                "log": str(node.files.log),
            }
        )
    return {
        "bootstrap": cluster_bootstrap(nodes),
        "external": False,
        "running": all(row["running"] for row in rows),
        "brokers": len(nodes),
        "version": KAFKA_VERSION,
        "nodes": rows,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deploy.kafka.local", description=__doc__)
    parser.add_argument("command", choices=["start", "stop", "status", "fetch"])
    parser.add_argument("--secure", action="store_true", help="start: a SASL_SSL listener")
    parsed = parser.parse_args(argv)
    command = parsed.command
    parser.add_argument("--brokers", type=int, default=1, help="start a cluster of this many nodes")
    if not structlog.is_configured():
        # stdout carries only the one-line result (status is JSON for scripts).
        structlog.configure(logger_factory=lambda *_: structlog.PrintLogger(sys.stderr))
    try:
        if command == "start":
            where = "external cluster" if uses_external_cluster() else "local broker"
            secure = parsed.secure and parsed.brokers == 1
            up = start(secure=secure) if parsed.brokers == 1 else start_cluster(parsed.brokers)
            print(f"Kafka ({where}) is up at {up}.")
        elif command == "stop" and uses_external_cluster():
            print("Nothing stopped: KAFKA_BOOTSTRAP_SERVERS points at an external cluster.")
        elif command == "stop":
            stopped = [stop(), stop_cluster()]  # the single broker and the cluster, both
            print("Kafka stopped." if any(stopped) else "No local Kafka broker was running.")
        elif command == "status":
            print(json.dumps(cluster_status() or status()))
        else:
            print(f"Kafka {KAFKA_VERSION} jars are in {fetch()}.")
    except KafkaSetupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
