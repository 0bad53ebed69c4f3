"""The deployment files, checked as CI checks them (deploy/k8s/validate.sh): every overlay
rendered by kustomize and valid against the Kubernetes schemas (kubeconform, strict) and
Strimzi's CRD schemas, the compose file against the Compose schema, the Dockerfile by hadolint;
the checks refuse broken files; and the rendered manifests keep the deployment rules
(probes on the agreed ports, resources, non-root read-only containers, secrets by reference,
workers' state on volumes, a disruption budget and a default-deny policy for every process,
no Kafka user that may create topics)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from deploy import manifests

ROOT = Path(__file__).resolve().parents[2]
needs_go = pytest.mark.skipif(
    shutil.which("go") is None,
    reason="Go is needed to build kubeconform (and kustomize without kubectl): install golang-go",
)
PORTS = {"worker": 6066, "gateway": 8080, "mllp": 8082, "deliver": 8083, "pages": 8090}
READY = {
    "worker": "/ready",
    "gateway": "/ready",
    "mllp": "/ready",
    "deliver": "/ready",
    "pages": "/livez",
}


@needs_go
def test_the_validate_script_passes_on_the_repositorys_files():
    done = subprocess.run(
        ["deploy/k8s/validate.sh"],
        cwd=ROOT,
        env={**os.environ, "PYTHON": sys.executable},
        capture_output=True,
        text=True,
        timeout=1200,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    for checked in ("deploy/image/Dockerfile: valid", "deploy/compose.yaml: valid"):
        assert checked in done.stdout
    for overlay in ("local", "production"):
        assert f"deploy/k8s/overlays/{overlay}: valid" in done.stdout
    assert "KafkaUser/concord-worker: valid" in done.stdout
    assert "Invalid: 0, Errors: 0" in done.stdout


def deployment(container: dict) -> dict:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "broken"},
        "spec": {
            "selector": {"matchLabels": {"a": "b"}},
            "template": {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": [container]}},
        },
    }


@needs_go
def test_kubeconform_refuses_unknown_fields_wrong_types_and_unknown_kinds(tmp_path):
    resources = [
        deployment(
            {
                "name": "c",
                "image": "concord",
                "livenessProbe": {"httpGet": {"path": "/livez"}},
                "bogus": 1,
            }
        ),
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "s"},
            "spec": {"ports": [{"port": "eighty"}]},
        },
        {
            "apiVersion": "monitoring.coreos.com/v1",
            "kind": "ServiceMonitor",
            "metadata": {"name": "m"},
            "spec": {},
        },
    ]
    outcome = manifests.check_kubernetes("broken", resources, tmp_path)
    problems = "\n".join(outcome.problems)
    assert not outcome.ok
    assert "additional properties 'bogus' not allowed" in problems
    assert "port" in problems
    assert "want integer" in problems
    assert "could not find schema for ServiceMonitor" in problems


@needs_go
def test_the_strimzi_schemas_refuse_a_bad_kafka_user_and_topic(tmp_path):
    user = {
        "apiVersion": "kafka.strimzi.io/v1beta2",
        "kind": "KafkaUser",
        "metadata": {"name": "u", "labels": {"strimzi.io/cluster": "concord"}},
        "spec": {
            "authentication": {"type": "scram-sha-1"},
            "authorization": {
                "type": "simple",
                "acls": [{"resource": {"type": "topic", "name": "t"}, "operations": ["Rule"]}],
            },
        },
    }
    topic = {
        "apiVersion": "kafka.strimzi.io/v1beta2",
        "kind": "KafkaTopic",
        "metadata": {"name": "t"},
        "spec": {"partitions": "four", "replicas": 3},
    }
    outcome = manifests.check_kubernetes("broken", [user, topic], tmp_path)
    problems = "\n".join(outcome.problems)
    assert "KafkaUser/u:" in problems
    assert "allowed values" in problems
    assert "KafkaTopic/t:" in problems
    assert "partitions" in problems


def test_the_compose_schema_refuses_an_unknown_service_key(tmp_path):
    if shutil.which("npm") is None:
        pytest.skip("npm is needed for the Compose schema")
    broken = tmp_path / "compose.yaml"
    broken.write_text("services:\n  worker:\n    image: concord:dev\n    comand: [worker]\n")
    outcome = manifests.check_compose(broken)
    assert any("comand" in problem for problem in outcome.problems), outcome.problems


def test_hadolint_flags_a_root_image_on_a_moving_tag(tmp_path):
    broken = tmp_path / "Dockerfile"
    broken.write_text(
        "FROM python:latest\nRUN apt-get update && apt-get install -y gcc\nCMD python\n"
    )
    outcome = manifests.check_dockerfile(broken)
    findings = "\n".join(outcome.problems)
    assert "DL3007" in findings  # latest
    assert "DL3008" in findings  # apt versions unpinned


# --- the rules the rendered manifests keep --------------------------------------------------


@pytest.fixture(scope="module", params=["local", "production"])
def rendered(request) -> list[dict]:
    if shutil.which("kubectl") is None and shutil.which("go") is None:
        pytest.skip("kubectl, or Go to build kustomize, is needed to render the overlays")
    return manifests.render(manifests.K8S / "overlays" / request.param)


def of_kind(resources: list[dict], kind: str) -> list[dict]:
    return [r for r in resources if r["kind"] == kind]


def workloads(resources: list[dict]) -> dict[str, dict]:
    found = of_kind(resources, "Deployment") + of_kind(resources, "StatefulSet")
    return {
        w["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/component"]: w for w in found
    }


def test_every_process_runs_from_the_one_image_with_its_own_command(rendered):
    procs = workloads(rendered)
    assert set(procs) == set(PORTS)
    images = {
        c["image"] for w in procs.values() for c in w["spec"]["template"]["spec"]["containers"]
    }
    assert len(images) == 1
    for name, workload in procs.items():
        (container,) = workload["spec"]["template"]["spec"]["containers"]
        assert container["args"][0] == name


def test_every_process_is_probed_on_its_agreed_port(rendered):
    for name, workload in workloads(rendered).items():
        (container,) = workload["spec"]["template"]["spec"]["containers"]
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        live, ready = container["livenessProbe"]["httpGet"], container["readinessProbe"]["httpGet"]
        assert live["path"] == "/livez"
        assert ports[live["port"]] == PORTS[name]
        assert ready["path"] == READY[name]
        assert ports[ready["port"]] == PORTS[name]
        annotations = workload["spec"]["template"]["metadata"]["annotations"]
        assert annotations["prometheus.io/port"] == str(PORTS[name])
        assert annotations["prometheus.io/path"] == "/metrics"


def test_every_container_is_non_root_read_only_and_sized(rendered):
    for workload in workloads(rendered).values():
        pod = workload["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] != 0
        assert pod["automountServiceAccountToken"] is False
        for container in pod["containers"]:
            security = container["securityContext"]
            assert security["readOnlyRootFilesystem"] is True
            assert security["allowPrivilegeEscalation"] is False
            assert security["capabilities"]["drop"] == ["ALL"]
            assert {"cpu", "memory"} <= set(container["resources"]["requests"])
            assert "memory" in container["resources"]["limits"]
            assert "/tmp" in {m["mountPath"] for m in container["volumeMounts"]}


def test_secrets_reach_the_processes_by_reference_only(rendered):
    for workload in workloads(rendered).values():
        for container in workload["spec"]["template"]["spec"]["containers"]:
            env = {e["name"]: e for e in container["env"]}
            for name in ("CONCORD_PERSON_KEY", "CONCORD_PAGES_SECRET", "CONCORD_PAGES_COOKIE_KEY"):
                if name in env:
                    assert "value" not in env[name]
                    assert "secretKeyRef" in env[name]["valueFrom"]
            assert not any(
                n.endswith(("SECRET", "PASSWORD", "_KEY")) and "value" in e for n, e in env.items()
            )
    settings = of_kind(rendered, "ConfigMap")[0]["data"]
    assert settings["CONCORD_KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"
    assert settings["CONCORD_KAFKA_SASL_MECHANISM"] == "SCRAM-SHA-512"
    assert settings["CONCORD_KAFKA_PASSWORD_FILE"].startswith("/etc/concord/")
    assert settings["CONCORD_CREATE_TOPICS"] == "false"
    assert not any("password" in k.lower() and not k.endswith("_FILE") for k in settings)


def test_workers_keep_their_state_on_their_own_volumes(rendered):
    (workers,) = of_kind(rendered, "StatefulSet")
    (claim,) = workers["spec"]["volumeClaimTemplates"]
    (container,) = workers["spec"]["template"]["spec"]["containers"]
    state = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}[
        claim["metadata"]["name"]
    ]
    data_dir = of_kind(rendered, "ConfigMap")[0]["data"]["CONCORD_DATA_DIR"]
    assert state == data_dir
    env = {e["name"]: e for e in container["env"]}
    assert env["CONCORD_WEB_HOST"]["value"] == "$(POD_IP)"


def test_every_process_has_a_disruption_budget_and_is_denied_by_default(rendered):
    budgets = {
        b["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"]
        for b in of_kind(rendered, "PodDisruptionBudget")
    }
    assert budgets == set(PORTS)
    policies = of_kind(rendered, "NetworkPolicy")
    deny = [
        p
        for p in policies
        if p["spec"]["policyTypes"] == ["Ingress", "Egress"]
        and "ingress" not in p["spec"]
        and "egress" not in p["spec"]
    ]
    assert len(deny) == 1
    assert deny[0]["spec"]["podSelector"]["matchLabels"] == {"app.kubernetes.io/name": "concord"}
    for workload in workloads(rendered).values():
        assert (
            workload["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/name"]
            == "concord"
        )


def test_the_kafka_cluster_is_three_kraft_nodes_with_sasl_and_no_topic_creation(rendered):
    (pool,) = of_kind(rendered, "KafkaNodePool")
    assert pool["spec"]["replicas"] == 3
    assert set(pool["spec"]["roles"]) == {"controller", "broker"}
    (kafka,) = of_kind(rendered, "Kafka")
    (listener,) = kafka["spec"]["kafka"]["listeners"]
    assert listener["tls"] is True
    assert listener["authentication"]["type"] == "scram-sha-512"
    config = kafka["spec"]["kafka"]["config"]
    assert config["auto.create.topics.enable"] is False
    assert config["min.insync.replicas"] == 2
    users = of_kind(rendered, "KafkaUser")
    assert {u["metadata"]["name"] for u in users} == {f"concord-{p}" for p in PORTS}
    for user in users:
        assert user["spec"]["authentication"]["type"] == "scram-sha-512"
        operations = {
            op for acl in user["spec"]["authorization"]["acls"] for op in acl["operations"]
        }
        assert not operations & {"Create", "All", "Alter", "Delete"}, user["metadata"]["name"]
    topics = of_kind(rendered, "KafkaTopic")
    assert topics
    assert all(t["spec"]["replicas"] == 3 for t in topics)


def test_the_topics_match_the_partition_count_and_replication_the_processes_are_given(rendered):
    settings = of_kind(rendered, "ConfigMap")[0]["data"]
    topics = {t["spec"]["topicName"]: t["spec"] for t in of_kind(rendered, "KafkaTopic")}
    for per_person in ("inbound", "person-events", "assignments", "alerts", "outbound"):
        assert topics[f"concord.{per_person}"]["partitions"] == int(settings["CONCORD_PARTITIONS"])
    for spec in topics.values():
        assert spec["replicas"] == int(settings["CONCORD_REPLICATION_FACTOR"])
        assert spec["config"]["min.insync.replicas"] == "2"
