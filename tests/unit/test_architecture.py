"""The pure core stays pure: services/domain imports only the standard library and schemas."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
DOMAIN = sorted((ROOT / "services" / "domain").glob("*.py"))
ALLOWED_PREFIXES = ("services.domain", "schemas")
# schemas modules the domain may use: plain data and rules, no pydantic models with I/O
DOMAIN_SAFE_SCHEMAS = {
    "schemas.identifiers",
    "schemas.topics",
    "schemas.referrals",
    "schemas.vocabulary",
    "schemas.keys",  # keyed hashes and the partition rule: pure functions
}


def imports_of(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


@pytest.mark.parametrize("path", DOMAIN, ids=lambda p: p.stem)
def test_domain_module_imports_nothing_that_does_io(path: Path) -> None:
    outside = {
        name
        for name in imports_of(path)
        if name.split(".")[0] not in sys.stdlib_module_names
        and name != "__future__"
        and not name.startswith("services.domain")
        and name not in DOMAIN_SAFE_SCHEMAS
    }
    assert outside == set(), f"{path.name} imports {sorted(outside)}"


def test_domain_has_modules_to_check() -> None:
    assert {p.stem for p in DOMAIN} >= {"calendar", "breach", "identity", "alerts", "partners"}
