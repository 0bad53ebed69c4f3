"""deploy.kafka.local without a broker: configuration, error messages, and what it refuses to do."""

from __future__ import annotations

import base64
import os
import socket
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from deploy.kafka import local

ENV_VARS = (
    "KAFKA_BOOTSTRAP_SERVERS",
    "CONCORD_KAFKA_PORT",
    "CONCORD_KAFKA_CONTROLLER_PORT",
    "CONCORD_KAFKA_HEAP",
    "CONCORD_MAVEN_OPTS",
)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ENV_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CONCORD_CACHE_DIR", str(tmp_path / "cache"))


@pytest.fixture(autouse=True)
def keep_logging_config(monkeypatch: pytest.MonkeyPatch) -> None:
    # main() configures structlog when nobody has; tests must not change it for others.
    monkeypatch.setattr(local.structlog, "is_configured", lambda: True)


@pytest.fixture
def no_processes(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        pytest.fail(f"no process may be started here, got {args!r}")

    monkeypatch.setattr(subprocess, "Popen", refuse)
    monkeypatch.setattr(subprocess, "run", refuse)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def parse_properties(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if line)


def assert_one_sentence(message: str) -> None:
    assert "\n" not in message
    assert message.endswith(".")
    assert message.count(". ") == 0, message


def test_bootstrap_defaults_to_local_port_9092() -> None:
    assert local.bootstrap_servers() == "127.0.0.1:9092"
    assert not local.uses_external_cluster()


def test_bootstrap_follows_concord_kafka_port(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONCORD_KAFKA_PORT", "19500")
    assert local.bootstrap_servers() == "127.0.0.1:19500"


def test_external_bootstrap_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONCORD_KAFKA_PORT", "19500")
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", " kafka-1:9092,kafka-2:9092 ")
    assert local.bootstrap_servers() == "kafka-1:9092,kafka-2:9092"
    assert local.uses_external_cluster()


def test_empty_external_bootstrap_means_local(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "  ")
    assert not local.uses_external_cluster()
    assert local.bootstrap_servers() == "127.0.0.1:9092"


@pytest.mark.parametrize("bad", ["abc", "0", "70000", "-1"])
def test_bad_port_is_a_setup_error(monkeypatch: pytest.MonkeyPatch, bad: str) -> None:
    monkeypatch.setenv("CONCORD_KAFKA_PORT", bad)
    with pytest.raises(local.KafkaSetupError, match="CONCORD_KAFKA_PORT") as caught:
        local.bootstrap_servers()
    assert_one_sentence(str(caught.value))


def test_properties_carry_ports_and_data_dir(tmp_path: Path) -> None:
    props = parse_properties(local.server_properties(19500, 19600, tmp_path / "data-19500"))
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:19500,CONTROLLER://127.0.0.1:19600"
    assert props["advertised.listeners"] == "PLAINTEXT://127.0.0.1:19500"
    assert props["controller.quorum.bootstrap.servers"] == "127.0.0.1:19600"
    assert "controller.quorum.voters" not in props  # breaks `StorageTool format --standalone`
    assert props["log.dirs"] == str(tmp_path / "data-19500")
    assert props["process.roles"] == "broker,controller"
    assert props["offsets.topic.replication.factor"] == "1"
    assert props["auto.create.topics.enable"] == "false"  # a publish before `topics create` fails


def test_files_are_per_port_and_jars_shared(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONCORD_KAFKA_PORT", "19500")
    a = local.status()
    monkeypatch.setenv("CONCORD_KAFKA_PORT", "19700")
    b = local.status()
    assert a["log"] != b["log"]
    assert local._files(19500).data != local._files(19700).data
    assert local._lib_dir().parts[-2:] == (local.KAFKA_VERSION, "libs")


def test_controller_port_defaults_to_port_plus_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONCORD_KAFKA_PORT", "19500")
    assert local._controller_port() == 19501
    monkeypatch.setenv("CONCORD_KAFKA_CONTROLLER_PORT", "19999")
    assert local._controller_port() == 19999


def test_pom_default_version_matches_pinned_version() -> None:
    pom = ET.parse(Path(local.__file__).with_name("pom.xml"))
    ns = {"m": "http://maven.apache.org/POM/4.0.0"}
    assert pom.findtext("m:properties/m:kafka.version", namespaces=ns) == local.KAFKA_VERSION


def test_cluster_id_is_a_kafka_uuid() -> None:
    cluster_id = local._new_cluster_id()
    assert len(cluster_id) == 22
    assert not cluster_id.startswith("-")
    assert len(base64.urlsafe_b64decode(cluster_id + "==")) == 16


def test_missing_java_is_one_sentence(monkeypatch: pytest.MonkeyPatch, no_processes: None) -> None:
    monkeypatch.setenv("CONCORD_KAFKA_PORT", str(free_port()))
    monkeypatch.setenv("CONCORD_KAFKA_CONTROLLER_PORT", str(free_port()))
    monkeypatch.setattr(local.shutil, "which", lambda name: None)
    with pytest.raises(local.KafkaSetupError, match="Java 17 or newer") as caught:
        local.start()
    assert_one_sentence(str(caught.value))
    assert "KAFKA_BOOTSTRAP_SERVERS" in str(caught.value)


def test_missing_maven_is_one_sentence(monkeypatch: pytest.MonkeyPatch, no_processes: None) -> None:
    monkeypatch.setattr(local.shutil, "which", lambda name: None)
    with pytest.raises(local.KafkaSetupError, match=r"Maven \(mvn\)") as caught:
        local.fetch()
    assert_one_sentence(str(caught.value))


def test_fetch_skips_maven_when_jars_are_cached(no_processes: None) -> None:
    libs = local._lib_dir()
    libs.mkdir(parents=True)
    (libs / f"kafka_2.13-{local.KAFKA_VERSION}.jar").write_bytes(b"")
    assert local.fetch() == libs


def test_maven_failure_shows_its_last_lines(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(local.shutil, "which", lambda name: f"/usr/bin/{name}")
    monkeypatch.setenv("CONCORD_MAVEN_OPTS", "-o -s 'my settings.xml'")
    seen: list[list[str]] = []

    def failing_mvn(cmd: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
        seen.append(cmd)
        return subprocess.CompletedProcess(cmd, 1, "[ERROR] Could not resolve kafka_2.13\n", "")

    monkeypatch.setattr(local.subprocess, "run", failing_mvn)
    with pytest.raises(local.KafkaSetupError, match=r"Could not resolve kafka_2\.13"):
        local.fetch()
    assert seen[0][:3] == ["/usr/bin/mvn", "-B", "-q"]
    assert {"-o", "-s", "my settings.xml"} <= set(seen[0])
    assert not local._lib_dir().exists()


def test_external_cluster_starts_and_stops_nothing(
    monkeypatch: pytest.MonkeyPatch, no_processes: None
) -> None:
    external = f"127.0.0.1:{free_port()}"
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", external)
    assert local.start() == external
    assert local.stop() is False
    assert local.status() == {
        "bootstrap": external,
        "external": True,
        "running": False,
        "pid": None,
        "version": local.KAFKA_VERSION,
        "log": None,
    }


def test_port_taken_by_another_program(monkeypatch: pytest.MonkeyPatch, no_processes: None) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        monkeypatch.setenv("CONCORD_KAFKA_PORT", str(port))
        with pytest.raises(local.KafkaSetupError, match=f"Port {port} .* already in use") as caught:
            local.start()
    assert "\n" not in str(caught.value)


def test_stop_when_nothing_runs_is_harmless(no_processes: None) -> None:
    assert local.stop() is False


def test_stale_pid_file_is_cleared(monkeypatch: pytest.MonkeyPatch, no_processes: None) -> None:
    monkeypatch.setenv("CONCORD_KAFKA_PORT", "19500")
    pid_file = local._files(19500).pid
    pid_file.parent.mkdir(parents=True)
    pid_file.write_text(f"{os.getpid()}\n")  # alive, but this test runner is not a Kafka JVM
    assert local.status()["running"] is False
    assert local.stop() is False
    assert not pid_file.exists()


def test_main_prints_setup_error_without_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], no_processes: None
) -> None:
    monkeypatch.setattr(local.shutil, "which", lambda name: None)
    assert local.main(["fetch"]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("error: Maven (mvn) is needed")
    assert "Traceback" not in err


def test_main_status_prints_json(capsys: pytest.CaptureFixture[str], no_processes: None) -> None:
    assert local.main(["status"]) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1
    assert '"running": false' in out


def test_cluster_nodes_take_consecutive_ports(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CONCORD_KAFKA_CONTROLLER_PORT", raising=False)
    monkeypatch.setenv("CONCORD_KAFKA_PORT", "19700")
    nodes = local.cluster_nodes(3)
    assert [(n.node_id, n.port, n.controller_port) for n in nodes] == [
        (1, 19700, 19703),
        (2, 19701, 19704),
        (3, 19702, 19705),
    ]
    assert local.cluster_bootstrap(nodes) == "127.0.0.1:19700,127.0.0.1:19701,127.0.0.1:19702"
    assert len({n.files.data for n in nodes} | {n.files.log for n in nodes}) == 6
    monkeypatch.setenv("CONCORD_KAFKA_CONTROLLER_PORT", "19750")
    assert [n.controller_port for n in local.cluster_nodes(3)] == [19750, 19751, 19752]


def test_cluster_properties_replicate_everything_three_ways(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("CONCORD_KAFKA_CONTROLLER_PORT", raising=False)
    monkeypatch.setenv("CONCORD_KAFKA_PORT", "19700")
    nodes = local.cluster_nodes(3)
    props = parse_properties(local.cluster_properties(nodes[1], nodes))
    assert props["node.id"] == "2"
    assert props["controller.quorum.voters"] == (
        "1@127.0.0.1:19703,2@127.0.0.1:19704,3@127.0.0.1:19705"
    )
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:19701,CONTROLLER://127.0.0.1:19704"
    assert props["default.replication.factor"] == "3"
    assert props["min.insync.replicas"] == "2"
    assert props["offsets.topic.replication.factor"] == "3"
    assert props["transaction.state.log.replication.factor"] == "3"
    assert props["transaction.state.log.min.isr"] == "2"
    assert props["unclean.leader.election.enable"] == "false"
    assert props["auto.create.topics.enable"] == "false"
