"""Unit tests for the partner directory: loading and checking it, and placing a partner's kind."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, get_args

import pytest
import yaml

from services.domain.calendar import AgencyKind
from services.domain.partners import (
    ORGANISATION_TYPE_LABELS,
    Partner,
    PartnerDirectory,
    UnknownPartner,
)
from services.runtime import verify_partner_secret

DEMO_DIRECTORY = Path(__file__).parents[2] / "deploy" / "demo" / "partners.yaml"


def directory(*entries: dict[str, Any]) -> PartnerDirectory:
    return PartnerDirectory.from_dict({"partners": list(entries)})


def entry(
    partner_id: str = "gp-Y01234", kind: str = "gp", name: str = "High Street Surgery"
) -> dict[str, Any]:
    return {"id": partner_id, "kind": kind, "name": name}


def test_demo_directory_lists_the_demo_partners_each_with_a_hashed_secret() -> None:
    demo = PartnerDirectory.from_dict(yaml.safe_load(DEMO_DIRECTORY.read_text(encoding="utf-8")))
    assert {(p.id, p.kind, p.name) for p in demo.partners.values()} == {
        ("probation-london", "probation", "London Probation Delivery Unit"),
        ("gp-Y01234", "gp", "High Street Surgery"),
        ("gp-A99999", "gp", "Riverside Medical Centre"),
        ("mht-rv5", "mht", "South London and Maudsley NHS FT"),
        ("vol-recovery", "voluntary", "Recovery Hub addiction service"),
        ("vol-housing", "voluntary", "Safe Homes housing support"),
        ("commissioner-sel", "commissioner", "South East London health commissioners"),
    }
    secrets = json.loads((DEMO_DIRECTORY.parent / "secrets.json").read_text())
    for partner in demo.partners.values():
        assert partner.secret_hash is not None
        assert secrets[partner.id] not in partner.secret_hash, "stored hashed, never in the clear"
        assert verify_partner_secret(secrets[partner.id], partner.secret_hash)


def test_a_plain_secret_pasted_as_the_hash_is_refused() -> None:
    with pytest.raises(ValueError, match="secret_hash"):
        directory({**entry(), "secret_hash": "hunter2hunter2"})


def test_listed_partner_kind_comes_from_the_directory() -> None:
    """A listed partner's kind wins even when its id follows no prefix convention."""
    listed = directory(entry("camden-talking-therapies", "mht", "Camden Talking Therapies"))
    assert listed.kind_of("camden-talking-therapies") == "mht"


@pytest.mark.parametrize(
    ("partner_id", "kind"),
    [
        ("probation-kent", "probation"),
        ("gp-B12345", "gp"),
        ("mht-nelft", "mht"),
        ("vol-turning-point", "voluntary"),
    ],
)
def test_unknown_partner_kind_falls_back_on_id_prefix(partner_id: str, kind: AgencyKind) -> None:
    assert directory().kind_of(partner_id) == kind


def test_unknown_partner_with_no_known_prefix_is_an_error() -> None:
    with pytest.raises(UnknownPartner):
        directory().kind_of("council-housing")


def test_unknown_partner_is_a_key_error() -> None:
    assert issubclass(UnknownPartner, KeyError)


def test_get_and_membership_only_know_listed_partners() -> None:
    listed = directory(entry())
    assert listed.get("gp-Y01234") == Partner("gp-Y01234", "gp", "High Street Surgery")
    assert listed.get("gp-A99999") is None
    assert "gp-Y01234" in listed
    assert "gp-A99999" not in listed


def test_bad_kind_is_rejected_naming_the_entry() -> None:
    with pytest.raises(ValueError, match=r"partner entry 2 \('gp-A99999'\): kind 'doctor'"):
        directory(entry(), entry("gp-A99999", "doctor"))


def test_missing_field_is_rejected_naming_the_entry() -> None:
    with pytest.raises(
        ValueError, match=r"partner entry 1 \('gp-Y01234'\) is missing the field 'name'"
    ):
        directory({"id": "gp-Y01234", "kind": "gp"})


def test_entry_without_an_id_is_rejected_by_position() -> None:
    with pytest.raises(ValueError, match="partner entry 1 is missing the field 'id'"):
        directory({"kind": "gp", "name": "Nameless"})


def test_empty_name_is_rejected() -> None:
    with pytest.raises(ValueError, match="name must be a non-empty string"):
        directory(entry(name="  "))


def test_duplicate_id_is_rejected() -> None:
    with pytest.raises(ValueError, match=r"partner entry 2: id 'gp-Y01234' is listed twice"):
        directory(entry(), entry(name="Another Surgery"))


@pytest.mark.parametrize("bad_id", ["GP Y01234", "-gp", "g", "gp_Y01234", "probation-london!"])
def test_id_not_matching_the_partner_id_form_is_rejected(bad_id: str) -> None:
    with pytest.raises(ValueError, match="is not a valid partner id"):
        directory(entry(bad_id))


def test_unexpected_field_is_rejected_so_typos_are_caught() -> None:
    with pytest.raises(ValueError, match="unexpected fields: nmae"):
        directory({**entry(), "nmae": "High St"})


@pytest.mark.parametrize(
    "data", [None, {}, {"partners": {"gp-Y01234": "gp"}}, {"partners": ["gp"]}]
)
def test_directory_of_the_wrong_shape_is_rejected(data: Any) -> None:
    with pytest.raises(ValueError, match="partner"):
        PartnerDirectory.from_dict(data)


def test_every_kind_has_an_organisation_type_label() -> None:
    assert set(ORGANISATION_TYPE_LABELS) == set(get_args(AgencyKind))
    assert ORGANISATION_TYPE_LABELS["mht"] == "Mental health trust"


def test_csv_columns_are_the_partners_own_header_names() -> None:
    listed = directory(
        {
            **entry("vol-recovery", "voluntary", "Recovery Hub"),
            "csv_columns": {" Session ": "appointment_id"},
        }
    )
    assert dict(listed.partners["vol-recovery"].csv_columns) == {"Session": "appointment_id"}
    assert dict(directory(entry()).partners["gp-Y01234"].csv_columns) == {}


def test_demo_directory_gives_the_recovery_hub_its_own_csv_header_names() -> None:
    demo = PartnerDirectory.from_dict(yaml.safe_load(DEMO_DIRECTORY.read_text(encoding="utf-8")))
    assert dict(demo.partners["vol-recovery"].csv_columns) == {
        "Service User No": "client_id",
        "Session": "appointment_id",
    }


@pytest.mark.parametrize(
    "mapping", [["client_id"], {"Session": ""}, {"": "client_id"}, {"Session": 3}, "Session"]
)
def test_csv_columns_that_are_not_a_mapping_of_names_are_refused(mapping: Any) -> None:
    with pytest.raises(ValueError, match="csv_columns must map the partner's CSV header names"):
        directory({**entry(), "csv_columns": mapping})
