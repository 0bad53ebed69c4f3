"""NHS number check digits and the other identifier systems."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas.identifiers import (
    NHS_NUMBER,
    PLACEHOLDER_VARIABLE,
    PROBATION_CRN,
    IdentifierError,
    PersonIdentifier,
    check_identifier,
    configured_placeholders,
    is_placeholder,
    local_system,
    nhs_number_is_valid,
    parse_token,
    without_placeholders,
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


# --- ASCII digits only ---------------------------------------------------------------------

ARABIC_INDIC = "٩٤٣٤٧٦٥٩١٩"  # 9434765919 in Arabic-Indic digits


@pytest.mark.parametrize(
    "number", [ARABIC_INDIC, "۹۴۳۴۷۶۵۹۱۹", "９４３４７６５９１９", "943476591٩"]
)
def test_nhs_number_in_non_ascii_digits_is_refused(number: str) -> None:
    """The same number written in other digits would otherwise be a second identifier."""
    assert not nhs_number_is_valid(number)
    with pytest.raises(IdentifierError, match="ten digits"):
        check_identifier(NHS_NUMBER, number)


def test_nhs_number_with_a_superscript_digit_is_refused_not_a_crash() -> None:
    """str.isdigit() accepts '²' and int() does not: this was an unhandled ValueError."""
    assert not nhs_number_is_valid("943476591²")
    with pytest.raises(IdentifierError, match="ten digits"):
        check_identifier(NHS_NUMBER, "943476591²")


@pytest.mark.parametrize(
    ("system", "value"),
    [(PROBATION_CRN, "X١٢٣٤٥٦"), (PROBATION_CRN, "X12345６"), (local_system("mht-rv5"), "MRN٤٤٥")],
)
def test_crn_and_local_values_in_non_ascii_digits_are_refused(system: str, value: str) -> None:
    with pytest.raises(IdentifierError):
        check_identifier(system, value)


ANY_SYSTEM = st.sampled_from([NHS_NUMBER, PROBATION_CRN, local_system("mht-rv5")])


@given(ANY_SYSTEM, st.text(max_size=14))
def test_any_text_is_an_ascii_identifier_or_an_identifier_error(system: str, value: str) -> None:
    """Nothing a partner writes makes the check fail any other way, or accept non-ASCII."""
    try:
        checked = check_identifier(system, value)
    except IdentifierError:
        return
    assert checked.value.isascii()


NON_ASCII_DIGITS = st.characters(categories=["Nd"]).filter(lambda c: not c.isascii())


@given(st.lists(st.sampled_from("0123456789") | NON_ASCII_DIGITS, min_size=10, max_size=10))
def test_an_nhs_number_with_any_non_ascii_digit_is_refused(digits: list[str]) -> None:
    number = "".join(digits)
    if number.isascii():
        return
    with pytest.raises(IdentifierError):
        check_identifier(NHS_NUMBER, number)


@given(st.text(alphabet="0123456789", min_size=9, max_size=9), NON_ASCII_DIGITS)
def test_a_crn_with_any_non_ascii_digit_is_refused(stem: str, digit: str) -> None:
    with pytest.raises(IdentifierError):
        check_identifier(PROBATION_CRN, "X" + stem[:5] + digit)


# --- placeholders ----------------------------------------------------------------------------


@pytest.mark.parametrize("digit", "0123456789")
def test_an_nhs_number_of_one_repeated_digit_passes_mod_11_but_is_a_placeholder(
    digit: str,
) -> None:
    identifier = check_identifier(NHS_NUMBER, digit * 10)
    assert is_placeholder(identifier)


def test_a_real_nhs_number_crn_or_local_id_is_not_a_placeholder() -> None:
    for system, value in [
        (NHS_NUMBER, "9434765919"),
        (PROBATION_CRN, "X000000"),
        (local_system("vol-recovery"), "1111"),
    ]:
        assert not is_placeholder(PersonIdentifier(system, value))


def test_a_placeholder_never_finds_a_person() -> None:
    with pytest.raises(IdentifierError, match="placeholder"):
        parse_token(f"{NHS_NUMBER}|9999999999")
    assert parse_token(f"{NHS_NUMBER}|9434765919").value == "9434765919"


def test_placeholders_are_left_out_and_only_placeholders_are_refused() -> None:
    crn = PersonIdentifier(PROBATION_CRN, "X123456")
    placeholder = PersonIdentifier(NHS_NUMBER, "9999999999")
    assert without_placeholders([crn, placeholder]) == (crn,)
    assert without_placeholders([]) == ()
    with pytest.raises(IdentifierError, match="placeholder"):
        without_placeholders([placeholder, PersonIdentifier(NHS_NUMBER, "0000000000")])


def test_the_setting_adds_placeholders(monkeypatch: pytest.MonkeyPatch) -> None:
    listed = PersonIdentifier(PROBATION_CRN, "Z999999")
    assert not is_placeholder(listed)
    monkeypatch.setenv(
        PLACEHOLDER_VARIABLE, f" {PROBATION_CRN}|Z999999 , {NHS_NUMBER}|943 476 5919,"
    )
    assert is_placeholder(listed)
    assert is_placeholder(PersonIdentifier(NHS_NUMBER, "9434765919"))  # listed with spaces
    assert is_placeholder(PersonIdentifier(NHS_NUMBER, "9999999999"))  # built in, still


def test_a_bad_placeholder_setting_names_the_entry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PLACEHOLDER_VARIABLE, f"{PROBATION_CRN}|Z999999,9999999999")
    with pytest.raises(IdentifierError, match=f"{PLACEHOLDER_VARIABLE}, entry 2"):
        configured_placeholders()
