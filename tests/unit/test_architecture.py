"""The layers point one way, checked on every module's imports (lazy ones included).

- schemas/ (the contract) imports no rules and no runtime: nothing of services/, connectors/
  or deploy/.
- services/domain/ (the rules) imports only the standard library, itself and the plain-data
  parts of the contract: no I/O.
- services/runtime.py (settings, broker address, clock, sign-in, logs) builds on the domain
  and the contract only; services/observe/ (metrics, health, operator alerts) on the runtime.
- services/stream/ (the processors) uses the domain and the runtime; services/web/ (the views,
  served by the same workers) may use the processors' tables too; neither reaches the edges.
- connectors/ (the edges) reach the processors only through Kafka: from services/ they import
  the domain, the runtime and services/observe/, nothing else.
- services/ops/ (the operator's commands) may use any layer.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
DOMAIN = sorted((ROOT / "services" / "domain").glob("*.py"))
# schemas modules the domain may use: plain data and rules, no pydantic models with I/O
DOMAIN_SAFE_SCHEMAS = {
    "schemas.identifiers",
    "schemas.topics",
    "schemas.referrals",
    "schemas.vocabulary",
    "schemas.keys",  # keyed hashes and the partition rule: pure functions
    "schemas.measures",  # the commissioners' figures: plain data
}
# For each layer (a module prefix), the project packages its modules may import.
MAY_IMPORT = {
    "schemas": ("schemas",),
    "services.runtime": ("schemas", "services.domain", "services.runtime"),
    "services.observe": ("schemas", "services.domain", "services.runtime", "services.observe"),
    "services.stream": (
        "schemas",
        "services.domain",
        "services.runtime",
        "services.observe",
        "services.stream",
    ),
    "services.web": (
        "schemas",
        "services.domain",
        "services.runtime",
        "services.observe",
        "services.stream",
        "services.web",
    ),
    "connectors": (
        "schemas",
        "services.domain",
        "services.runtime",
        "services.observe",
        "connectors",
        "deploy.topics",
    ),
    "deploy": ("schemas", "services.runtime", "deploy"),
}
PROJECT = ("schemas", "services", "connectors", "deploy", "bench", "tests")


def imports_of(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
    return found


def module_of(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts)


def _within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def _layer_of(module: str) -> str | None:
    matching = [layer for layer in MAY_IMPORT if _within(module, layer)]
    return max(matching, key=len) if matching else None


def _project_imports(path: Path) -> set[str]:
    """The project modules `path` imports (a `from package import module` counts as module)."""
    names = imports_of(path)
    return {
        name
        for name in names
        if name.split(".")[0] in PROJECT
        # `from services.domain import x`: the module is services.domain.x or the package
        and not any(other != name and other.startswith(name + ".") for other in names)
    }


LAYERED = [
    path
    for package in ("schemas", "services", "connectors", "deploy")
    for path in sorted((ROOT / package).rglob("*.py"))
    if _layer_of(module_of(path)) is not None
]


def violations(module: str, path: Path) -> set[str]:
    """The project modules `path` (module `module`) imports that its layer may not."""
    layer = _layer_of(module)
    assert layer is not None, f"{module} is in no layer"
    allowed = MAY_IMPORT[layer]
    return {
        name
        for name in _project_imports(path)
        if not any(_within(name, prefix) for prefix in allowed)
    }


@pytest.mark.parametrize("path", LAYERED, ids=module_of)
def test_each_layer_imports_only_the_layers_below_it(path: Path) -> None:
    outside = violations(module_of(path), path)
    assert outside == set(), f"{module_of(path)} imports {sorted(outside)}"


@pytest.mark.parametrize("path", DOMAIN, ids=lambda p: p.stem)
def test_domain_module_imports_nothing_that_does_io(path: Path) -> None:
    outside = {
        name
        for name in imports_of(path)
        if name.split(".")[0] not in sys.stdlib_module_names
        and name != "__future__"
        and not name.startswith("services.domain")
        and not any(_within(name, safe) for safe in DOMAIN_SAFE_SCHEMAS)
    }
    assert outside == set(), f"{path.name} imports {sorted(outside)}"


def test_the_layers_have_modules_to_check() -> None:
    layers = {_layer_of(module_of(path)) for path in LAYERED}
    assert layers == set(MAY_IMPORT)
    assert {p.stem for p in DOMAIN} >= {"calendar", "breach", "identity", "alerts", "partners"}


def test_a_forbidden_import_is_caught(tmp_path: Path) -> None:
    """An edge reaching a processor, even lazily inside a function, is caught; its use of the
    runtime and the domain is not."""
    edge = tmp_path / "edge.py"
    edge.write_text(
        "from services.runtime import settings\n"
        "from services.domain import partners\n"
        "def f():\n    from services.stream.app import app\n",
        encoding="utf-8",
    )
    assert violations("connectors.edge", edge) == {"services.stream.app.app"}
    contract = tmp_path / "contract.py"
    contract.write_text("from services.domain.identity import resolve\n", encoding="utf-8")
    assert violations("schemas.contract", contract) == {"services.domain.identity.resolve"}
