"""HL7 v2 acknowledgement modes (original and enhanced, MSH-15/16) and ERR as each version reads it."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime

import pytest
from hl7apy.parser import parse_message as hl7apy_parse

from connectors.hl7v2.ack import Outcome, acknowledgements, enhanced_mode
from connectors.hl7v2.message import (
    APPLICATION_INTERNAL_ERROR,
    ErrorReport,
    Header,
    Separators,
    read_header,
    unescape,
)

NOW = datetime(2026, 12, 1, 9, 31, 5, tzinfo=UTC)
NO_NHS = ErrorReport("PID-3: no NHS number or local number & no luck", "PID^1^3", 103)
TRY_AGAIN = ErrorReport("send it again", "", APPLICATION_INTERNAL_ERROR)
REFUSED = ErrorReport("MSH-9.1: unsupported message type 'ORU'", "MSH^1^9^1^1", 200)


def header(accept: str = "", application: str = "", version: str = "2.5") -> Header:
    text = f"MSH|^~\\&|RIO|RV5|CONCORD|HUB|20261201093000||ADT^A01|C-1|P|{version}|||{accept}|{application}"
    return read_header(text)


def answer(original: Header, outcome: Outcome) -> list[list[list[str]]]:
    """Each ACK's segments split into fields, after checking hl7apy reads it."""
    acks = acknowledgements(original, outcome, ack_control_id="ACK", now=NOW)
    for ack in acks:
        hl7apy_parse(ack, find_groups=False)
    return [[segment.split("|") for segment in ack.split("\r") if segment] for ack in acks]


def codes(acks: list[list[list[str]]]) -> list[str]:
    return [fields[1] for ack in acks for fields in ack if fields[0] == "MSA"]


def test_msh_15_and_16_are_read_from_the_header() -> None:
    read = header("AL", "er")
    assert (read.accept_ack_type, read.application_ack_type) == ("AL", "ER")
    assert enhanced_mode(read)
    assert not enhanced_mode(header())


def test_original_mode_answers_once_with_the_application_code() -> None:
    [ack] = answer(header(), Outcome("AA"))
    assert ack[0][8:11] == ["ACK^A01^ACK", "ACK", "P"]  # MSH-9 to MSH-11
    assert len(ack[0]) == 12, "no MSH-15/16 in original mode"
    assert ack[1] == ["MSA", "AA", "C-1"]


def test_original_mode_when_kafka_failed_is_one_ae_saying_send_again() -> None:
    [ack] = answer(header(), Outcome("AE", (TRY_AGAIN,), stored=False))
    assert ack[1][:2] == ["MSA", "AE"]


def test_enhanced_mode_commits_then_answers_for_the_application() -> None:
    commit, application = answer(header("AL", "AL"), Outcome("AA"))
    assert commit[1] == ["MSA", "CA", "C-1"]
    assert application[1] == ["MSA", "AA", "C-1"]
    assert commit[0][9] != application[0][9], "each ACK has its own control id (MSH-10)"
    for ack in (commit, application):
        assert ack[0][14:16] == ["NE", "NE"], "an ACK asks for no ACK of itself (MSH-15/16)"
        assert [f[0] for f in ack] == ["MSH", "MSA"]


def test_an_application_error_is_committed_then_answered_ae_with_its_errors() -> None:
    commit, application = answer(header("AL", "ER"), Outcome("AE", (NO_NHS,)))
    assert codes([commit]) == ["CA"]
    assert [f[0] for f in commit] == ["MSH", "MSA"], "the commit itself has no error"
    assert application[1][1] == "AE"
    [err] = [f for f in application if f[0] == "ERR"]
    assert err[2:5] == ["PID^1^3", "103^Table value not found^HL70357", "E"]


def test_a_message_refused_outright_is_commit_rejected_and_never_reaches_the_application() -> None:
    [commit] = answer(header("AL", "AL"), Outcome("AR", (REFUSED,)))
    assert commit[1][1] == "CR"
    [err] = [f for f in commit if f[0] == "ERR"]
    assert err[3].startswith("200^")


def test_a_message_kafka_did_not_store_is_a_commit_error_and_nothing_else() -> None:
    [commit] = answer(header("AL", "AL"), Outcome("AE", (TRY_AGAIN,), stored=False))
    assert commit[1][1] == "CE"
    assert "send it again" in commit[-1][8]


@pytest.mark.parametrize(
    ("accept", "application", "outcome", "expected"),
    [
        ("NE", "AL", Outcome("AA"), ["AA"]),
        ("AL", "NE", Outcome("AA"), ["CA"]),
        ("ER", "SU", Outcome("AA"), ["AA"]),
        ("ER", "ER", Outcome("AA"), []),
        ("SU", "ER", Outcome("AE", (NO_NHS,)), ["CA", "AE"]),
        ("SU", "AL", Outcome("AE", (TRY_AGAIN,), stored=False), []),
        ("ER", "AL", Outcome("AE", (TRY_AGAIN,), stored=False), ["CE"]),
        # AL/NE, as most trusts send: a refusal is told on the commit ACK, not hidden behind CA
        ("AL", "NE", Outcome("AE", (NO_NHS,)), ["CR"]),
        ("AL", "SU", Outcome("AE", (NO_NHS,)), ["CR"]),
        ("", "AL", Outcome("AA"), ["CA", "AA"]),  # one of the two valued: the other is AL
        ("AL", "", Outcome("AA"), ["CA", "AA"]),
    ],
)
def test_msh_15_and_16_choose_which_acks_are_sent(
    accept: str, application: str, outcome: Outcome, expected: list[str]
) -> None:
    assert codes(answer(header(accept, application), outcome)) == expected


OUTCOMES = [
    Outcome("AA"),
    Outcome("AE", (NO_NHS,)),
    Outcome("AR", (REFUSED,)),
    Outcome("AE", (TRY_AGAIN,), stored=False),
]


@pytest.mark.parametrize(
    ("accept", "application", "outcome"),
    [
        (accept, application, outcome)
        for accept, application in itertools.product(["AL", "NE", "ER", "SU", "", "XX"], repeat=2)
        for outcome in OUTCOMES
    ],
)
def test_no_ack_ever_says_more_than_happened(
    accept: str, application: str, outcome: Outcome
) -> None:
    """Never an AA for a message the application refused, nor any application ACK for one
    Kafka did not store; a commit comes first; every error is told where an ACK carries it."""
    sent = codes(answer(header(accept, application), outcome))
    if not (accept or application):
        assert sent == [outcome.code]
        return
    assert len(sent) <= 2
    assert sent == sorted(sent, key=lambda code: not code.startswith("C")), "commit first"
    if not outcome.stored:
        assert set(sent) <= {"CE"}
    if outcome.code != "AA":
        assert "AA" not in sent
    if outcome.code == "AR":
        assert set(sent) <= {"CR"}
    if outcome.code != "AA" and outcome.stored and "CA" in sent:
        assert outcome.code in sent, "a refusal is never answered by a bare commit"


# --- ERR as the sender's version reads it -------------------------------------------------


@pytest.mark.parametrize("version", ["2.5", "2.5.1", "2.6", "2.7", "2.8"])
def test_v2_5_on_puts_location_code_and_severity_in_err_2_to_4(version: str) -> None:
    [ack] = answer(header(version=version), Outcome("AE", (NO_NHS, TRY_AGAIN)))
    assert ack[0][11] == version, "MSH-12 echoes the sender's version"
    errs = [f for f in ack if f[0] == "ERR"]
    assert [e[1:5] for e in errs] == [
        ["", "PID^1^3", "103^Table value not found^HL70357", "E"],
        ["", "", "207^Application internal error^HL70357", "E"],
    ]
    assert unescape(errs[0][8], Separators()) == NO_NHS.message


@pytest.mark.parametrize("version", ["2.3", "2.3.1", "2.4"])
def test_v2_3_and_v2_4_put_location_and_code_in_err_1(version: str) -> None:
    [ack] = answer(header(version=version), Outcome("AE", (NO_NHS, TRY_AGAIN)))
    assert ack[0][11] == version
    [err] = [f for f in ack if f[0] == "ERR"]
    assert len(err) == 2, "ERR-1 only"
    first, second = err[1].split("~")
    segment, sequence, field, code = first.split("^")
    assert (segment, sequence, field) == ("PID", "1", "3")
    identifier, text, table, _alternate, reason = code.split("&")
    assert (identifier, text, table) == ("103", "Table value not found", "HL70357")
    assert unescape(reason, Separators()) == NO_NHS.message, "the reason, & escaped"
    assert second.startswith("^^^207&")
    assert ack[1][3] == NO_NHS.message[:80].replace("&", "\\T\\"), "MSA-3 still carries it"


def test_a_location_with_a_component_keeps_segment_sequence_and_field_in_v2_4() -> None:
    [ack] = answer(header(version="2.4"), Outcome("AR", (REFUSED,)))
    [err] = [f for f in ack if f[0] == "ERR"]
    assert err[1].startswith("MSH^1^9^200&")
