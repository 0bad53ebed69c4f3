"""The container image and the laptop compose file keep the deployment rules (docs/operations.md):
one pinned, multi-stage, non-root image for every process; three brokers, two workers and every
other process in the compose file, on the agreed ports. The schema checks themselves are in
tests/integration/test_manifests.py."""

from __future__ import annotations

import re

import pytest
import yaml

from deploy.manifests import (
    COMPOSE_FILE,
    DOCKERFILE,
    schema_file_name,
    standalone_schema,
)
from services.ops.cli import SERVICES

PROCESSES = {"worker", *SERVICES}  # worker, gateway, deliver, mllp, pages


def stages(dockerfile: str) -> list[list[str]]:
    """The Dockerfile's instructions (continuations joined, comments dropped), per stage."""
    text = re.sub(r"\\\n", " ", dockerfile)
    lines = [
        ln.strip() for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")
    ]
    result: list[list[str]] = []
    for line in lines:
        if line.upper().startswith("FROM "):
            result.append([])
        result[-1].append(line)
    return result


DOCKER = stages(DOCKERFILE.read_text())
FINAL = DOCKER[-1]


def test_the_image_is_built_in_stages_from_pinned_bases():
    bases = [stage[0].split()[1] for stage in DOCKER]
    assert len(DOCKER) >= 3  # the pages' assets, the Python build, the image that runs
    for base in bases:
        _name, _, tag = base.partition(":")
        # an exact version (or a digest), never a moving tag
        assert re.fullmatch(r"\d+\.\d+\.\d+-[a-z-]+(@sha256:[0-9a-f]{64})?", tag), base
        assert "latest" not in tag


def test_the_image_runs_as_a_numeric_non_root_user_with_concord_as_entrypoint():
    users = [ln.split()[1] for ln in FINAL if ln.upper().startswith("USER ")]
    assert users, "the final stage sets no USER"
    uid = users[-1].split(":")[0]
    assert uid.isdigit()
    assert int(uid) != 0
    assert 'ENTRYPOINT ["concord"]' in FINAL


def test_the_final_stage_has_no_build_tools_and_no_healthcheck():
    final = "\n".join(FINAL)
    for tool in ("apt-get install", "gcc", "build-essential", "npm ", "pip install"):
        assert tool not in final, tool
    assert not any(ln.upper().startswith("HEALTHCHECK") for stage in DOCKER for ln in stage)
    # the pages' design system comes from the npm stage, the Python packages from the build stage
    copies = [ln for ln in FINAL if ln.upper().startswith("COPY --FROM=")]
    assert len(copies) == 2


def test_the_build_context_sends_only_the_sources():
    ignored = (DOCKERFILE.parents[2] / ".dockerignore").read_text().splitlines()
    assert ignored[ignored.index("**")] == "**"  # everything out, then the sources back in
    for kept in ("!schemas/", "!services/", "!connectors/", "!deploy/", "!pyproject.toml"):
        assert kept in ignored
    assert "connectors/pages/node_modules/" in ignored


COMPOSE = yaml.safe_load(COMPOSE_FILE.read_text())
SERVICES_IN_COMPOSE = COMPOSE["services"]


def concord_services() -> dict[str, dict]:
    return {n: s for n, s in SERVICES_IN_COMPOSE.items() if s["image"].startswith("concord:")}


def test_compose_runs_three_kraft_brokers_that_never_auto_create_topics():
    brokers = {
        n: s for n, s in SERVICES_IN_COMPOSE.items() if s["image"].startswith("apache/kafka:")
    }
    assert len(brokers) == 3
    voters = {s["environment"]["KAFKA_CONTROLLER_QUORUM_VOTERS"] for s in brokers.values()}
    assert voters == {"1@kafka-1:9093,2@kafka-2:9093,3@kafka-3:9093"}
    for service in brokers.values():
        env = service["environment"]
        assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
        assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
        assert env["KAFKA_MIN_INSYNC_REPLICAS"] == "2"
    assert {s["environment"]["KAFKA_NODE_ID"] for s in brokers.values()} == {"1", "2", "3"}
    assert len({s["image"] for s in brokers.values()}) == 1
    assert re.fullmatch(r"apache/kafka:\d+\.\d+\.\d+", next(iter(brokers.values()))["image"])


def test_compose_runs_every_process_from_one_image_after_the_topics_are_made():
    services = concord_services()
    assert len({s["image"] for s in services.values()}) == 1
    commands = [s["command"][0] for s in services.values()]
    assert commands.count("worker") == 2
    assert set(commands) == PROCESSES | {"topics"}
    assert services["topics"]["command"] == ["topics", "create"]
    assert services["topics"]["restart"] == "no"
    for name, service in services.items():
        if name != "topics":
            assert service["depends_on"]["topics"]["condition"] == "service_completed_successfully"
            assert service["environment"]["CONCORD_CREATE_TOPICS"] == "false"
        assert service["environment"]["CONCORD_REPLICATION_FACTOR"] == "3"
        assert service["read_only"] is True


def test_compose_workers_keep_their_state_on_their_own_volumes_and_address_each_other():
    workers = {n: s for n, s in concord_services().items() if s["command"] == ["worker"]}
    mounts = {
        n: [v for v in s["volumes"] if v.endswith(":/var/lib/concord/state")]
        for n, s in workers.items()
    }
    assert all(len(m) == 1 for m in mounts.values())
    assert len({m[0] for m in mounts.values()}) == 2  # one volume each
    for name, service in workers.items():
        assert service["environment"]["CONCORD_WEB_HOST"] == service["hostname"] == name


@pytest.mark.parametrize(
    ("process", "setting", "port"),
    [
        ("gateway", "CONCORD_GATEWAY_PORT", "8080"),
        ("pages", "CONCORD_PAGES_PORT", "8090"),
        ("mllp", "CONCORD_MLLP_HTTP_PORT", "8082"),
        ("deliver", "CONCORD_DELIVERY_HTTP_PORT", "8083"),
        ("worker-1", "CONCORD_WEB_PORT", "6066"),
    ],
)
def test_compose_uses_the_agreed_ports(process, setting, port):
    assert SERVICES_IN_COMPOSE[process]["environment"][setting] == port


def test_compose_publishes_ports_on_the_laptop_only():
    for service in SERVICES_IN_COMPOSE.values():
        for mapping in service.get("ports", []):
            assert mapping.startswith("127.0.0.1:"), mapping


def test_compose_mounts_exist_in_the_repository():
    for service in concord_services().values():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (COMPOSE_FILE.parent / source).exists(), source


# --- the Kubernetes schemas kubeconform is given --------------------------------------------


@pytest.mark.parametrize(
    ("api_version", "kind", "name"),
    [
        ("apps/v1", "StatefulSet", "statefulset-apps-v1.json"),
        ("v1", "Service", "service-v1.json"),
        ("networking.k8s.io/v1", "NetworkPolicy", "networkpolicy-networking-v1.json"),
        ("policy/v1", "PodDisruptionBudget", "poddisruptionbudget-policy-v1.json"),
    ],
)
def test_schema_file_names_follow_kubeconforms_layout(api_version, kind, name):
    assert schema_file_name(api_version, kind) == name


def test_a_standalone_schema_carries_every_definition_it_reaches_and_no_remote_id():
    definitions = {
        "a.Spec": {"properties": {"meta": {"$ref": "#/$defs/b.Meta"}}},
        "b.Meta": {"properties": {"time": {"$ref": "#/$defs/c.Time"}}},
        "c.Time": {"type": "string"},
        "d.Unused": {"type": "integer"},
    }
    kind = {
        "$id": "https://kubernetes.io/api/thing/v1",
        "properties": {"spec": {"$ref": "/api/_definitions.json#/$defs/a.Spec"}},
    }
    schema = standalone_schema(kind, definitions)
    assert "$id" not in schema
    assert schema["properties"]["spec"]["$ref"] == "#/$defs/a.Spec"
    assert set(schema["$defs"]) == {"a.Spec", "b.Meta", "c.Time"}
    assert schema["$defs"]["b.Meta"]["properties"]["time"]["$ref"] == "#/$defs/c.Time"
