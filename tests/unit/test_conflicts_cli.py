"""The operator's view of identity conflicts, and the decision the CLI sends to the linker."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson

from schemas.identifiers import NHS_NUMBER, PROBATION_CRN, PersonIdentifier
from services.domain.identity import PersonIndex, RefusedLink, conflict_record, resolve, settle
from services.ops.cli import build_parser
from services.ops.conflicts import conflict_entry, conflict_lines, open_conflicts, resolve_command
from services.web.inbox import latest_entries
from tests.keys import KEY

CRN = PersonIdentifier(PROBATION_CRN, "X123456")
NHS = PersonIdentifier(NHS_NUMBER, "9434765919")
OTHER_NHS = PersonIdentifier(NHS_NUMBER, "4010232137")
AT = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def entries() -> dict[str, dict]:
    index, _ = resolve(PersonIndex(KEY), [CRN, NHS], source="probation-london")
    index, refused = resolve(index, [OTHER_NHS, CRN], source="mht-rv5", at=AT)
    assert isinstance(refused, RefusedLink)
    open_one = refused.conflict
    _, settlement = settle(
        index, open_one.conflict_id, "keep-apart", operator="ops", reason="r", at=AT
    )
    settled = {**conflict_record(settlement.conflict), "conflict_id": "c-settled"}
    return {"c-settled": settled, open_one.conflict_id: conflict_record(open_one)}


def test_only_open_conflicts_are_listed() -> None:
    [entry] = open_conflicts(entries())
    assert entry["status"] == "open"


def test_a_conflict_line_names_each_source_with_its_own_identifiers() -> None:
    [entry] = open_conflicts(entries())
    text = conflict_lines(entry)
    first, *sources = text.splitlines()
    assert first.startswith(entry["conflict_id"])
    assert "raised 2026-12-01T09:00:00Z" in first
    [probation] = [line for line in sources if "probation-london" in line]
    assert "linked before" in probation
    assert OTHER_NHS.value not in probation
    [mht] = [line for line in sources if "mht-rv5" in line]
    assert "the link not applied" in mht
    assert NHS.value not in mht


def test_the_decision_sent_to_the_linker() -> None:
    command = orjson.loads(
        resolve_command("c-1", "keep-apart", operator="ops", reason="two people", at=AT)
    )
    assert command["command"] == "resolve-conflict"
    assert (command["conflict_id"], command["decision"]) == ("c-1", "keep-apart")
    assert (command["operator"], command["reason"], command["at"]) == (
        "ops",
        "two people",
        "2026-12-01T09:00:00Z",
    )
    assert command["request_id"]


def test_resolve_needs_exactly_one_decision_and_a_reason() -> None:
    import pytest

    parser = build_parser()
    args = parser.parse_args(["identity", "resolve", "c-1", "--link", "--reason", "PDS merge"])
    assert (args.link, args.keep_apart, args.reason) == (True, False, "PDS merge")
    for wrong in (
        ["identity", "resolve", "c-1", "--reason", "r"],
        ["identity", "resolve", "c-1", "--link", "--keep-apart", "--reason", "r"],
        ["identity", "resolve", "c-1", "--link"],
    ):
        with pytest.raises(SystemExit):
            parser.parse_args(wrong)


def test_the_operator_reads_conflict_records_from_the_topic_and_passes_by_anything_else() -> None:
    """Conflict records are not referral inbox entries: each topic has its own reader."""
    [open_one] = open_conflicts(entries())
    conflict_id = open_one["conflict_id"]
    messages = [
        (conflict_id.encode(), orjson.dumps(open_one)),
        (b"ref-1", orjson.dumps({"referral_id": "ref-1", "status": "accepted"})),
        (b"c-x", b"not json"),
    ]
    assert latest_entries(messages, read=conflict_entry) == {conflict_id: open_one}
