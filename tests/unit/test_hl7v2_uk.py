"""HL7 v2 as UK trusts send it: where appointment times come from, PID identifiers, batches."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from connectors.hl7v2.message import (
    DEFAULT_SEPARATORS,
    Hl7Error,
    parse_dtm,
    parse_message,
    part,
    split_messages,
)
from connectors.hl7v2.to_fhir import map_message, records_from_hl7_text

FIXTURES = Path(__file__).parents[1] / "fixtures" / "mht"
PARTNER = "mht-rv5"
NHS_SYSTEM = "https://fhir.nhs.uk/Id/nhs-number"
LOCAL_SYSTEM = "urn:concord:id:local:mht-rv5"
S12 = (FIXTURES / "siu-s12.hl7").read_bytes().decode("utf-8")
SCH_11 = "^^60^20261204130000^20261204140000"
AIS_TIME = "|20261204130000|||60|min"


def resources(text: str) -> list[dict[str, Any]]:
    return list(map_message(text, PARTNER).resources)


def booking(text: str) -> dict[str, Any]:
    [found] = [r for r in resources(text) if r["resourceType"] == "Appointment"]
    return found


def times(text: str) -> tuple[str, str]:
    found = booking(text)
    return found["start"], found["end"]


def with_tq1(text: str, tq1: str) -> str:
    return text.replace("\rPID", f"\r{tq1}\rPID")


def error(text: str) -> Hl7Error:
    with pytest.raises(Hl7Error) as caught:
        map_message(text, PARTNER)
    return caught.value


# --- appointment times --------------------------------------------------------------------


def test_tq1_times_win_over_an_sch_11_window() -> None:
    """v2.6+ withdrew SCH-11: a pattern or window left there is not the appointment."""
    text = S12.replace(SCH_11, "2^^2 hours^20261201090000^20261209090000^R")
    text = with_tq1(text, "TQ1|1||||||20261207103000|20261207111500")
    assert times(text) == ("2026-12-07T10:30:00Z", "2026-12-07T11:15:00Z")


@pytest.mark.parametrize(
    "tq1",
    [
        "TQ1|1|||||45^min&minutes&ANS+|20261207103000",
        "TQ1|1|||||45|20261207103000",  # no units: minutes
        "TQ1|1||||||20261207103000||||||0.75^h",  # TQ1-13 occurrence duration
    ],
)
def test_tq1_start_plus_its_service_or_occurrence_duration(tq1: str) -> None:
    assert times(with_tq1(S12, tq1)) == ("2026-12-07T10:30:00Z", "2026-12-07T11:15:00Z")


def test_tq1_end_wins_over_its_durations() -> None:
    text = with_tq1(S12, "TQ1|1|||||90^min|20261207103000|20261207111500")
    assert times(text) == ("2026-12-07T10:30:00Z", "2026-12-07T11:15:00Z")


def test_a_tq1_start_without_an_end_takes_the_appointment_duration_sch_9() -> None:
    text = with_tq1(S12, "TQ1|1||||||20261207103000")
    assert times(text) == ("2026-12-07T10:30:00Z", "2026-12-07T11:30:00Z")


def test_a_tq1_without_a_start_leaves_the_times_to_sch_11() -> None:
    text = with_tq1(S12, "TQ1|1||||||")
    assert times(text) == ("2026-12-04T13:00:00Z", "2026-12-04T14:00:00Z")


@pytest.mark.parametrize("duration", ["M45", "45", "45 min", "0.75 hours", "S2700"])
def test_sch_11_start_plus_its_duration_when_it_has_no_end(duration: str) -> None:
    text = S12.replace(SCH_11, f"^^{duration}^20261204130000")
    assert times(text) == ("2026-12-04T13:00:00Z", "2026-12-04T13:45:00Z")


def test_resources_give_the_times_when_neither_tq1_nor_sch_11_does() -> None:
    text = S12.replace(SCH_11, "").replace(AIS_TIME, "|20261204150000|||20|min")
    assert times(text) == ("2026-12-04T15:00:00Z", "2026-12-04T15:20:00Z")


def test_an_sch_10_unit_of_m_is_minutes() -> None:
    text = S12.replace(SCH_11, "^^^20261204130000").replace("|60|min^minutes|", "|30|m|")
    assert times(text) == ("2026-12-04T13:00:00Z", "2026-12-04T13:30:00Z")


@pytest.mark.parametrize(
    ("tq1", "where"),
    [
        ("TQ1|1|||||45^fortnights|20261207103000", "TQ1-6.2"),
        ("TQ1|1|||||lots^min|20261207103000", "TQ1-6.1"),
        ("TQ1|1||||||2026120710", "TQ1-7"),
    ],
)
def test_unusable_tq1_values_are_named(tq1: str, where: str) -> None:
    assert error(with_tq1(S12, tq1)).where == where


def test_an_unreadable_sch_11_duration_is_named_only_when_it_is_needed() -> None:
    assert error(S12.replace(SCH_11, "^^soon^20261204130000")).where == "SCH-11.3"
    assert times(S12.replace(SCH_11, "^^soon^20261204130000^20261204140000"))[1] == (
        "2026-12-04T14:00:00Z"
    )


def test_an_explicit_null_sch_11_is_no_time() -> None:
    text = S12.replace(SCH_11, '""').replace(AIS_TIME, "|20261204150000|||20|min")
    assert times(text) == ("2026-12-04T15:00:00Z", "2026-12-04T15:20:00Z")


def test_s16_discontinued_is_a_cancellation() -> None:
    text = S12.replace("SIU^S12^SIU_S12", "SIU^S16^SIU_S16").replace("||Booked", "||Dc")
    assert booking(text)["status"] == "cancelled"


# --- the person ---------------------------------------------------------------------------


def pid(pid3: str, *, pid2: str = "", pid32: str = "") -> str:
    """S12 with its PID replaced: PID-2, PID-3 and PID-32 as given."""
    fields = ["PID", "1", pid2, pid3] + [""] * 28 + [pid32]
    lines = S12.split("\r")
    index = next(i for i, line in enumerate(lines) if line.startswith("PID"))
    lines[index] = "|".join(fields).rstrip("|")
    return "\r".join(lines)


def person(text: str) -> tuple[str | None, str | None]:
    """(NHS number, local number) the message names its person by."""
    found = resources(text)
    named = [found[0]["identifier"]] if found[0]["resourceType"] == "Patient" else []
    identifiers = named[0] if named else [found[0]["participant"][0]["actor"]["identifier"]]
    by_system = {i["system"]: i["value"] for i in identifiers}
    return by_system.get(NHS_SYSTEM), by_system.get(LOCAL_SYSTEM)


@pytest.mark.parametrize("kind", ["MR", "MRN", "HOSP", "PI", "MEDREC"])
def test_local_type_codes_are_the_trusts_own_number(kind: str) -> None:
    assert person(pid(f"9434765919^^^NHS^NH~RV5-77^^^RV5^{kind}")) == ("9434765919", "RV5-77")


@pytest.mark.parametrize(
    ("pid3", "expected"),
    [
        ("RV5-77^^^RV5", (None, "RV5-77")),  # untyped, with an assigning authority
        ("RV5-77^^^&1.2.826.0.1.1&ISO", (None, "RV5-77")),  # authority by OID only
        ("42", (None, "42")),  # PID-3's only identifier, neither type nor authority
        ("9434765919^^^NHS^NH~RV5-77^^^RV5~X1^^^EHR", ("9434765919", "RV5-77")),
        ("X9^^^EHR~RV5-77^^^RV5^PI", (None, "RV5-77")),  # a typed local number wins
        ("9434765919^^^^NH", ("9434765919", None)),
        ("9434765919^^^NHS", ("9434765919", None)),
        ("9434765919^^^&2.16.840.1.113883.2.1.4.1&ISO", ("9434765919", None)),
        ('RV5-77^^^""^MR', (None, "RV5-77")),  # explicit null authority
    ],
)
def test_pid_3_identifiers(pid3: str, expected: tuple[str | None, str | None]) -> None:
    assert person(pid(pid3)) == expected


@pytest.mark.parametrize(
    "pid3",
    ["42~43", "123456789^^^USSSA^SS", "42~123456789^^^USSSA^SS", "X1^^^^GOOD HOSPITAL"],
)
def test_identifiers_the_hub_cannot_place_are_refused(pid3: str) -> None:
    found = error(pid(pid3))
    assert (found.where, found.code) == ("PID-3", 103)
    assert "no NHS number" in found.reason


def test_pid_2_holds_the_nhs_number_in_older_feeds() -> None:
    assert person(pid("RV5-77^^^RV5^MR", pid2="9434765919")) == ("9434765919", "RV5-77")
    assert person(pid("RV5-77^^^RV5^MR", pid2="9434765919^^^NHS^NH")) == ("9434765919", "RV5-77")
    assert person(pid("RV5-77^^^RV5^MR", pid2="1234567^^^RV5^MR")) == (None, "RV5-77")


@pytest.mark.parametrize(
    ("nhs", "pid2"),
    [
        ("9999999999^^^NHS^NH", ""),  # placeholder
        ("9434765918^^^NHS^NH", ""),  # fails mod-11
        ("", "9999999999"),
        ("", "9434765918"),
    ],
)
def test_a_placeholder_or_invalid_nhs_number_is_never_used(nhs: str, pid2: str) -> None:
    pid3 = "~".join(x for x in (nhs, "RV5-77^^^RV5^MR") if x)
    assert person(pid(pid3, pid2=pid2)) == (None, "RV5-77")


def test_an_invalid_nhs_number_alone_is_refused_saying_why() -> None:
    assert "mod-11" in error(pid("9434765918^^^NHS^NH")).reason
    assert "placeholder" in error(pid("9999999999^^^NHS^NH")).reason


@pytest.mark.parametrize("status", ["", "01", "AL"])
def test_a_verified_or_unstated_trace_status_keeps_the_nhs_number(status: str) -> None:
    text = pid("9434765919^^^NHS^NH~RV5-77^^^RV5^MR", pid32=status)
    assert person(text) == ("9434765919", "RV5-77")


@pytest.mark.parametrize("status", ["02", "03", "04", "05", "06", "07", "08", "01~04"])
def test_an_nhs_number_pid_32_says_is_not_traced_is_not_used(status: str) -> None:
    assert person(pid("9434765919^^^NHS^NH~RV5-77^^^RV5^MR", pid32=status)) == (None, "RV5-77")
    found = error(pid("9434765919^^^NHS^NH", pid32=status))
    assert (found.where, found.code) == ("PID-3", 103)
    assert "not verified" in found.reason


@pytest.mark.parametrize("pid3", ['""', '""~""'])
def test_an_explicit_null_pid_3_is_missing_not_the_text(pid3: str) -> None:
    found = error(pid(pid3))
    assert (found.where, found.code) == ("PID-3", 101)


def test_an_explicit_null_component_reads_as_empty() -> None:
    assert part('""^x', DEFAULT_SEPARATORS, 1) == ""
    assert part('a^""', DEFAULT_SEPARATORS, 2) == ""
    assert part('a&""', DEFAULT_SEPARATORS, 1, 2) == ""
    assert part('"quoted"', DEFAULT_SEPARATORS, 1) == '"quoted"'


# --- message framing and headers ----------------------------------------------------------

BATCH = "\r".join(
    [
        "FHS|^~\\&|RIO|RV5|||20261201090000",
        "BHS|^~\\&|RIO|RV5|||20261201090000",
        S12.strip("\r"),
        S12.strip("\r").replace("RV5-0001", "RV5-0002"),
        "BTS|2",
        "FTS|1",
    ]
)


def test_a_batch_file_splits_into_its_messages_without_the_envelope() -> None:
    messages = split_messages(BATCH)
    assert [m.split("\r")[0].split("|")[9] for m in messages] == ["RV5-0001", "RV5-0002"]
    assert not any(
        line[:3] in {"FHS", "BHS", "BTS", "FTS"} for m in messages for line in m.split("\r")
    )


def test_a_batch_file_gives_the_records_of_each_message() -> None:
    records = list(records_from_hl7_text(BATCH, "batch.hl7", PARTNER))
    assert records
    assert all(not r.problems for r in records)
    assert {r.correlation for r in records} == {"RV5-0001", "RV5-0002"}


@pytest.mark.parametrize(
    ("value", "instant"),
    [
        ("20201004140000.000", "2020-10-04T13:00:00+00:00"),
        ("20201004140000.000+0100", "2020-10-04T13:00:00+00:00"),
        ("20201004140000+0100", "2020-10-04T13:00:00+00:00"),
        ("20110613122406637", "2011-06-13T11:24:06.637000+00:00"),
    ],
)
def test_timestamps_with_fractions_of_a_second(value: str, instant: str) -> None:
    assert parse_dtm(value).isoformat() == instant


def test_a_17_digit_message_time_is_accepted() -> None:
    text = S12.replace("|20261201093000|", "|20261201093000123|")
    assert parse_message(text).sent_at.isoformat() == "2026-12-01T09:30:00.123000+00:00"


def test_v27_five_encoding_characters_are_accepted() -> None:
    text = S12.replace("MSH|^~\\&|", "MSH|^~\\&#|").replace("|P|2.5.1|", "|P|2.7|")
    assert resources(text) == resources(S12)


def test_unknown_z_segments_anywhere_are_passed_by() -> None:
    text = S12.replace("\rPID", "\rZPI|1|x^y~z|\\F\\|\rPID").strip("\r") + "\rZLW||||T1|DISCH"
    assert resources(text) == resources(S12)
