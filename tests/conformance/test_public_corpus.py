"""Every public sample message in tests/fixtures/public/ goes through its partner path and the
hub does with it what tests/conformance/expected.yaml says a user wants.

Files the hub does not handle yet carry `today:` in the manifest: their test is an expected
failure (strict, so it fails the moment the hub gets it right), and a second test checks they
still fare as `today` records, so any change in behaviour asks for the manifest to be updated.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.conformance.manifest import entries, today_matches, verdict
from tests.conformance.paths import PUBLIC, outcomes


def _cases() -> list[Any]:
    cases = []
    for name, entry in entries().items():
        marks = []
        if "today" in entry:
            today = entry["today"]
            why = today.get("reason") or today.get("note", "")
            reason = f"not yet; today {today['outcome']}: {why}"
            marks.append(pytest.mark.xfail(strict=True, reason=reason))
        cases.append(pytest.param(name, entry, marks=marks, id=name))
    return cases


@pytest.mark.parametrize(("name", "entry"), _cases())
def test_the_hub_does_what_a_user_wants(name: str, entry: dict[str, Any]) -> None:
    found = outcomes(PUBLIC / name, entry["partner"], entry["format"])
    result = verdict(entry, found)
    assert result.met, f"{result.name}: {result.detail}"


@pytest.mark.parametrize(
    ("name", "entry"),
    [pytest.param(n, e, id=n) for n, e in entries().items() if "today" in e],
)
def test_files_not_handled_yet_still_fare_as_recorded(name: str, entry: dict[str, Any]) -> None:
    found = outcomes(PUBLIC / name, entry["partner"], entry["format"])
    change = today_matches(entry, found)
    assert change is None, f"{name}: {change}; update its `today` (or remove it) in expected.yaml"


def test_every_public_sample_is_in_the_manifest() -> None:
    on_disk = {
        str(p.relative_to(PUBLIC)) for p in PUBLIC.rglob("*") if p.is_file() and p.suffix != ".md"
    }
    assert on_disk == set(entries())
