"""Unit tests for the statement of who is signed in that the pages give the workers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.domain.staff import (
    STATEMENT_LIFETIME,
    Staff,
    StaffRefused,
    may_act_for,
    statement,
    verify_statement,
)

NOW = datetime(2026, 12, 3, 10, 0, tzinfo=UTC)
OFFICER = Staff(user="officer.adeyemi", partner="probation-london", role="probation-officer")
SECRET = "pages-secret"


def test_a_statement_names_the_person_it_was_made_for() -> None:
    assert verify_statement(statement(OFFICER, SECRET, NOW), SECRET, NOW) == OFFICER


def test_a_statement_signed_with_another_secret_is_refused() -> None:
    with pytest.raises(StaffRefused, match="not signed"):
        verify_statement(statement(OFFICER, "other", NOW), SECRET, NOW)


def test_an_altered_statement_is_refused() -> None:
    version, _body, mac = statement(OFFICER, SECRET, NOW).split(".")
    forged = statement(
        Staff(user="officer.adeyemi", partner="probation-london", role="clinician"), "x", NOW
    ).split(".")[1]
    with pytest.raises(StaffRefused):
        verify_statement(f"{version}.{forged}.{mac}", SECRET, NOW)


def test_a_statement_expires() -> None:
    made = statement(OFFICER, SECRET, NOW)
    assert verify_statement(made, SECRET, NOW + STATEMENT_LIFETIME) == OFFICER
    with pytest.raises(StaffRefused, match="expired"):
        verify_statement(made, SECRET, NOW + STATEMENT_LIFETIME + timedelta(seconds=1))


@pytest.mark.parametrize("header", [None, "", "v1", "v1.abc", "v2.abc.def", "v1.!!.x"])
def test_a_missing_or_malformed_statement_is_refused(header: str | None) -> None:
    with pytest.raises(StaffRefused):
        verify_statement(header, SECRET, NOW)


def test_without_a_secret_no_statement_is_accepted() -> None:
    with pytest.raises(StaffRefused, match="no pages secret"):
        verify_statement(statement(OFFICER, SECRET, NOW), "", NOW)


def test_roles_act_only_for_their_kind_of_partner() -> None:
    assert may_act_for("probation-officer", "probation")
    assert may_act_for("clinician", "mht")
    assert may_act_for("clinician", "gp")
    assert not may_act_for("clinician", "probation")
    assert not may_act_for("operator", "probation")
