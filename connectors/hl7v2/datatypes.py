"""FHIR elements written as HL7 v2.5.1 data types (CX, XPN, XAD, XTN, CE, DT) for outbound
messages, text escaped for the default separators `|^~\\&`.

Pure functions: each takes the element as the (already minimised) resource carries it and
writes only what is there; an element it cannot read gives an empty field, never a guess.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from connectors.hl7v2.message import escape
from schemas.identifiers import NHS_NUMBER

# HL7 table 0201 (telecommunication use) by FHIR ContactPoint.use; table 0202 by system.
_TELECOM_USE = {"home": "PRN", "work": "WPN", "mobile": "PRN", "temp": "ORN"}
_EQUIPMENT = {"phone": "PH", "fax": "FX", "pager": "BP"}
# HL7 table 0190 (address type) by FHIR Address.use.
_ADDRESS_TYPE = {"home": "H", "work": "B", "temp": "C", "billing": "M"}
# HL7 table 0200 (name type) by FHIR HumanName.use.
_NAME_TYPE = {"official": "L", "usual": "D", "nickname": "N", "maiden": "M", "anonymous": "S"}
# HL7 table 0001 (administrative sex) by FHIR Patient.gender.
SEX = {"male": "M", "female": "F", "other": "O", "unknown": "U"}


def text(value: Any) -> str:
    """A string element escaped for one component; anything else, nothing."""
    return escape(value) if isinstance(value, str) else ""


def components(*parts: str) -> str:
    """Components joined by `^`, trailing empty ones left off."""
    return "^".join(parts).rstrip("^")


def repeat(values: Iterable[str]) -> str:
    return "~".join(value for value in values if value)


def cx(identifier: Mapping[str, Any]) -> str:
    """An identifier as CX: an NHS number as `<number>^^^NHS^NH` (the form UK trusts' PID-3
    reads); any other as its value under its system (`X123456^^^&urn:concord:id:probation-crn&URI`)."""
    value, system = identifier.get("value"), identifier.get("system")
    if not isinstance(value, str) or not isinstance(system, str):
        return ""
    if system == NHS_NUMBER:
        return components(text(value), "", "", "NHS", "NH")
    return components(text(value), "", "", f"&{text(system)}&URI")


def xpn(name: Mapping[str, Any]) -> str:
    """A HumanName as XPN: family^given^further given names^suffix^prefix^^name type."""
    given = [g for g in name.get("given") or () if isinstance(g, str)]
    family = name.get("family")
    if not isinstance(family, str) and not given and isinstance(name.get("text"), str):
        family = name["text"]  # v2.5 has no component for an unstructured name
    return components(
        text(family),
        text(given[0]) if given else "",
        escape(" ".join(given[1:])),
        escape(" ".join(s for s in name.get("suffix") or () if isinstance(s, str))),
        escape(" ".join(p for p in name.get("prefix") or () if isinstance(p, str))),
        "",
        _NAME_TYPE.get(str(name.get("use")), ""),
    )


def xad(address: Mapping[str, Any]) -> str:
    """An Address as XAD: street^other lines^city^county^postcode^country^address type."""
    lines = [line for line in address.get("line") or () if isinstance(line, str)]
    return components(
        text(lines[0]) if lines else "",
        escape(", ".join(lines[1:])),
        text(address.get("city")),
        text(address.get("district") or address.get("state")),
        text(address.get("postalCode")),
        text(address.get("country")),
        _ADDRESS_TYPE.get(str(address.get("use")), ""),
    )


def xtn(contact: Mapping[str, Any]) -> str:
    """A ContactPoint as XTN: an email as `^NET^Internet^<address>`, a number in XTN-12
    (unformatted) with its use (table 0201) and equipment (table 0202)."""
    system, value = contact.get("system"), contact.get("value")
    if not isinstance(value, str):
        return ""
    if system == "email":
        return components("", "NET", "Internet", text(value))
    equipment = "CP" if contact.get("use") == "mobile" else _EQUIPMENT.get(str(system), "")
    use = _TELECOM_USE.get(str(contact.get("use")), "")
    return components("", use, equipment, *([""] * 8), text(value))


def ce(concept: Any) -> str:
    """A CodeableConcept as CE: code^text^coding system (its first coding; the text alone when
    it has no coding)."""
    if not isinstance(concept, Mapping):
        return ""
    codings = [c for c in concept.get("coding") or () if isinstance(c, Mapping)]
    first = codings[0] if codings else {}
    shown = concept.get("text") or first.get("display")
    return components(text(first.get("code")), text(shown), text(first.get("system")))


def dt(date: Any) -> str:
    """A FHIR date (`1980-01-31`, `1980-01`, `1980`) as HL7 DT (`19800131`)."""
    return date[:10].replace("-", "") if isinstance(date, str) else ""
