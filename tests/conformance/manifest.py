"""The conformance manifest (expected.yaml) and the verdict on one file: did the hub do what a
user of a probation and health integration hub wants with it?

Pure: outcomes in (from `tests.conformance.paths`), a verdict out. The manifest's fields are
described at the top of expected.yaml.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from tests.conformance.paths import Outcome, person

MANIFEST = Path(__file__).with_name("expected.yaml")

# Verdicts, in the order the report prints them.
ACCEPTED = "accepted"  # accepted (or passed by) as a user wants
REFUSED_CORRECTLY = "refused correctly"
REFUSED_WRONGLY = "refused wrongly"  # a user wants it taken, the hub refuses all or part
ACCEPTED_WRONGLY = "accepted wrongly"  # a user wants it refused, the hub takes or passes it
OTHER_REASON = "refused, other reason"  # refused as wanted, but not saying why a user needs
OTHER_CONTENT = "accepted, other content"  # taken, but not what a user wants taken
VERDICTS = (
    ACCEPTED,
    REFUSED_CORRECTLY,
    REFUSED_WRONGLY,
    ACCEPTED_WRONGLY,
    OTHER_REASON,
    OTHER_CONTENT,
)
MET = frozenset({ACCEPTED, REFUSED_CORRECTLY})


@dataclass(frozen=True, slots=True)
class Verdict:
    """How a file fared against its expectation, and in words why."""

    name: str
    detail: str = ""

    @property
    def met(self) -> bool:
        """True when the hub did what the manifest expects."""
        return self.name in MET


@cache
def entries() -> dict[str, dict[str, Any]]:
    """The manifest: public fixture path (relative to tests/fixtures/public) -> expectation."""
    data = yaml.safe_load(MANIFEST.read_text(encoding="utf-8"))
    return dict(data["files"])


def file_outcome(found: Sequence[Outcome]) -> str:
    """One word for a file: accepted, partly refused, refused, or ignored (nothing taken or refused)."""
    taken = any(o.kind == "accepted" for o in found)
    refused = any(o.kind == "refused" for o in found)
    if taken:
        return "partly refused" if refused else "accepted"
    return "refused" if refused else "ignored"


def verdict(entry: Mapping[str, Any], found: Sequence[Outcome]) -> Verdict:
    """The verdict on a file's outcomes against its manifest entry."""
    expect = entry["expect"]
    if expect == "refused":
        return _refusal_verdict(entry, found)
    parts = entry.get("refused_parts") or []
    unexpected = [o for o in found if o.kind == "refused" and not _is_expected_part(o, parts)]
    if unexpected:
        return Verdict(REFUSED_WRONGLY, _first(unexpected))
    problems = _content_problems(entry, found)
    if problems:
        return Verdict(OTHER_CONTENT, "; ".join(problems))
    return Verdict(ACCEPTED)


def _refusal_verdict(entry: Mapping[str, Any], found: Sequence[Outcome]) -> Verdict:
    refused = [o for o in found if o.kind == "refused"]
    taken = [o for o in found if o.kind == "accepted"]
    if taken or not refused:
        what = f"took {taken[0].event_type or 'a record'}" if taken else "refused nothing"
        return Verdict(ACCEPTED_WRONGLY, what)
    wanted = str(entry["reason"]).lower()
    other = [o for o in refused if wanted not in o.reason.lower()]
    if other:
        return Verdict(OTHER_REASON, _first(other))
    return Verdict(REFUSED_CORRECTLY)


def _is_expected_part(outcome: Outcome, parts: Sequence[Mapping[str, str]]) -> bool:
    return any(
        outcome.origin.endswith(part["at"]) and part["reason"].lower() in outcome.reason.lower()
        for part in parts
    )


def _content_problems(entry: Mapping[str, Any], found: Sequence[Outcome]) -> list[str]:
    """What a file that was not refused lacks, or has too much of, against its expectation."""
    taken = [o for o in found if o.kind == "accepted"]
    problems = []
    if entry["expect"] == "ignored" and taken:
        problems.append(f"took {taken[0].event_type}, which the hub should pass by")
    if entry["expect"] == "accepted" and not taken:
        problems.append("took nothing")
    for item in entry.get("take") or []:
        if not any(_takes(item, o, entry["partner"]) for o in taken):
            problems.append(f"nothing taken matches {item}")
    ignored = {o.reason for o in found if o.kind == "ignored"}
    for resource_type in entry.get("ignores") or []:
        if resource_type not in ignored:
            problems.append(f"no {resource_type} passed by with a warning")
    for part in entry.get("refused_parts") or []:
        if not any(_is_expected_part(o, [part]) for o in found if o.kind == "refused"):
            problems.append(f"{part['at']} not refused for {part['reason']!r}")
    return problems


def _takes(item: Mapping[str, str], outcome: Outcome, partner: str) -> bool:
    """True when an accepted record is the one a `take` item describes."""
    resource = outcome.resource or {}
    if "resourceType" in item and resource.get("resourceType") != item["resourceType"]:
        return False
    if "status" in item and resource.get("status") != item["status"]:
        return False
    if "person" in item and person(item["person"], partner) not in outcome.people:
        return False
    period = resource.get("period") or {}
    for bound in ("start", "end"):
        if bound in item:
            value = resource.get(bound) or period.get(bound)
            if value is None or _instant(value) != _instant(item[bound]):
                return False
    return True


def _instant(value: str) -> datetime | str:
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return str(value)


def _first(found: Sequence[Outcome]) -> str:
    more = f" (and {len(found) - 1} more)" if len(found) > 1 else ""
    return f"{found[0].origin}: {found[0].reason}"[:300] + more


def today_matches(entry: Mapping[str, Any], found: Sequence[Outcome]) -> str | None:
    """None when the file still fares as its `today` says; else what changed."""
    today = entry["today"]
    outcome = file_outcome(found)
    if outcome != today["outcome"]:
        return f"now {outcome}, recorded as {today['outcome']}"
    reason = today.get("reason")
    if reason and not any(reason.lower() in o.reason.lower() for o in found if o.kind == "refused"):
        return f"no refusal says {reason!r} any more"
    return None
