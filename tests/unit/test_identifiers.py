"""NHS number check digits and the other identifier systems."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas.identifiers import (
    NHS_NUMBER,
    PROBATION_CRN,
    IdentifierError,
    check_identifier,
    local_system,
    nhs_number_is_valid,
)


@pytest.mark.parametrize("number", ["9434765919", "9000000009", "9000000017", "4010232137"])
def test_valid_nhs_numbers_pass(number: str) -> None:
    assert nhs_number_is_valid(number)


@pytest.mark.parametrize(
    "number",
    ["9434765918", "9000000001", "943476591", "94347659190", "94347659l9", "", "1000000010"],
)
def test_nhs_numbers_with_bad_check_digit_or_shape_fail(number: str) -> None:
    assert not nhs_number_is_valid(number)


@given(st.text(alphabet="0123456789", min_size=9, max_size=9))
def test_exactly_one_check_digit_completes_a_nine_digit_stem_or_none_does(stem: str) -> None:
    """Mod 11 leaves at most one valid tenth digit (none when the remainder gives 10)."""
    assert sum(nhs_number_is_valid(stem + str(d)) for d in range(10)) <= 1


def test_nhs_number_with_spaces_is_normalised() -> None:
    assert check_identifier(NHS_NUMBER, "943 476 5919").value == "9434765919"


def test_bad_nhs_number_error_does_not_echo_the_number() -> None:
    with pytest.raises(IdentifierError) as raised:
        check_identifier(NHS_NUMBER, "9434765918")
    assert "9434765918" not in str(raised.value)


def test_crn_must_be_a_letter_and_six_digits() -> None:
    assert check_identifier(PROBATION_CRN, "X123456").value == "X123456"
    with pytest.raises(IdentifierError):
        check_identifier(PROBATION_CRN, "123456X")


def test_local_identifier_names_its_partner() -> None:
    assert check_identifier(local_system("mht-rv5"), "MRN445566").system.endswith("mht-rv5")
    with pytest.raises(IdentifierError):
        check_identifier("urn:concord:id:local:", "MRN1")


def test_unknown_system_is_refused() -> None:
    with pytest.raises(IdentifierError, match="unknown identifier system"):
        check_identifier("http://example.org/ids", "1")
