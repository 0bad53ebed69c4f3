"""Field checks and FHIR pieces shared by the partner-feed connectors (probation JSON, CSV).

Each check returns the mapped value or raises FieldError with a reason that never
repeats a person identifier, so the reason can go to the terminal and the dead letter.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, TypeGuard, TypeVar

from schemas.fhir import Problem
from schemas.identifiers import IdentifierError, PersonIdentifier, check_identifier, is_placeholder
from schemas.vocabulary import UK_TIME as LONDON

_T = TypeVar("_T")

_FHIR_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
_VERSION = re.compile(r"^[0-9]{1,18}$")  # the calendars table orders versions as 64-bit integers


class FieldError(ValueError):
    """A partner field value that cannot be mapped, with the reason."""


class FieldReader:
    """Reads the fields of one event or row, keeping a Problem for each one missing or wrong."""

    def __init__(self, fields: Mapping[str, Any], *, missing: str = "field required") -> None:
        self.fields = fields
        self.missing = missing
        self.problems: list[Problem] = []

    def text(self, name: str, *, required: bool = False, number: bool = False) -> str | None:
        """The field as stripped text, None when absent or blank (a Problem if required)."""
        value = self.fields.get(name)
        if number and isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        if value is None or (isinstance(value, str) and not value.strip()):
            if required:
                self.problems.append(Problem(name, self.missing))
            return None
        if not isinstance(value, str):
            self.problems.append(Problem(name, "must be a string"))
            return None
        return value.strip()

    def mapped(
        self, name: str, check: Callable[[str], _T], *, required: bool = False, number: bool = False
    ) -> _T | None:
        """The field passed through `check`; None, with a Problem, when the check fails."""
        value = self.text(name, required=required, number=number)
        if value is None:
            return None
        try:
            return check(value)
        except FieldError as exc:
            self.problems.append(Problem(name, str(exc)))
            return None


def fhir_id(value: str, *, prefix: str = "") -> str:
    """`prefix + value` when it is a valid FHIR id (1-64 letters, digits, '-' or '.')."""
    if not _FHIR_ID.match(prefix + value):
        limit = 64 - len(prefix)
        raise FieldError(f"{value!r} is not a valid id (1-{limit} letters, digits, '-' or '.')")
    return prefix + value


def person(system: str, value: str) -> dict[str, str]:
    """A FHIR Identifier for a person, checked as the hub checks it (CRN form, NHS check digit)."""
    try:
        checked = check_identifier(system, value)
    except IdentifierError as exc:
        raise FieldError(str(exc)) from None
    return {"system": checked.system, "value": checked.value}


def linkable(identifier: dict[str, str] | None) -> TypeGuard[dict[str, str]]:
    """True when an identifier (as `person` gives it) is present and not a placeholder.

    A placeholder (an NHS number of one repeated digit) is carried in the resource but
    never names or links the person.
    """
    return identifier is not None and not is_placeholder(
        PersonIdentifier(identifier["system"], identifier["value"])
    )


def version_id(value: str) -> str:
    """A version number as FHIR meta.versionId: a whole number, so versions order."""
    if not _VERSION.match(value):
        raise FieldError(f"{value!r} is not a whole number")
    return str(int(value))


def london_to_utc(local: datetime) -> datetime:
    """A Europe/London wall-clock time as a UTC instant; a time the clocks skip is an error."""
    # fold=0: in the autumn hour that happens twice, the first (BST) reading is taken.
    aware = local.replace(tzinfo=LONDON, fold=0)
    if aware.astimezone(UTC).astimezone(LONDON).replace(tzinfo=None) != local:
        raise FieldError(
            f"{local:%H:%M} does not exist on {local:%Y-%m-%d} in Europe/London (clocks go forward)"
        )
    return aware.astimezone(UTC)


def date_time(value: str) -> datetime:
    """An ISO 8601 date-time; one without an offset is London wall-clock time."""
    try:
        if len(value) < 16 or value[10] not in "Tt ":
            raise ValueError("a date-time needs a date and a time")
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise FieldError(f"not an ISO 8601 date-time: {value!r}") from None
    return parsed if parsed.tzinfo else london_to_utc(parsed)


def fhir_instant(moment: datetime) -> str:
    """A FHIR instant in UTC with a Z, e.g. 2026-12-03T10:00:00Z."""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def location_participant(text: str) -> dict[str, Any]:
    """An Appointment participant for a place given as free text.

    The reconciler compares `Location/<id>` references to decide whether travel
    time is needed, so the same text must always give the same id.
    """
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:64]
    if not slug:  # text of punctuation or non-Latin letters only: still stable, still distinct
        slug = hashlib.sha256(text.encode()).hexdigest()[:16]
    return {"actor": {"reference": f"Location/{slug}", "display": text}, "status": "accepted"}


def person_participant(identifier: dict[str, str]) -> dict[str, Any]:
    """The Appointment participant naming the person by an identifier."""
    return {"actor": {"identifier": identifier}, "status": "accepted"}


def meta(version: str | None, last_updated: str | None) -> dict[str, str]:
    """FHIR meta with whichever of versionId and lastUpdated the partner gave."""
    found = {"versionId": version, "lastUpdated": last_updated}
    return {key: value for key, value in found.items() if value is not None}
