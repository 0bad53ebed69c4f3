"""Read partner FHIR input — JSON resources, Bundles, NDJSON and XML — into records.

A record is one resource with where it came from, its raw text (kept for the
dead-letter topic) and, inside a Bundle, the Patients that its references may
point at. Parsing problems are attached to the record, never raised, so one bad
entry does not stop the rest of a file.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from lxml import etree
from pydantic import ValidationError

from schemas.fhir import BUNDLE_TYPES, CARRIED, Problem

FHIR_NS = "http://hl7.org/fhir"
# Resources a Bundle may carry in support of the events (who, where); the hub passes them by.
SUPPORTING_TYPES = frozenset(
    {
        "Practitioner",
        "PractitionerRole",
        "Organization",
        "Location",
        "Endpoint",
        "HealthcareService",
    }
)


@dataclass(frozen=True, slots=True)
class Record:
    """One resource read from partner input, or the reason it could not be read."""

    origin: str
    raw: str
    resource: dict[str, Any] | None = None
    bundled_patients: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    correlation: str | None = None
    problems: tuple[Problem, ...] = ()
    in_bundle: bool = False

    @property
    def ok(self) -> bool:
        """True when the record parsed and is ready for validation."""
        return self.resource is not None and not self.problems


def read_file(path: Path) -> Iterator[Record]:
    """Records from a FHIR JSON, NDJSON or XML file, chosen by extension then content."""
    yield from read_partner_file(path, read_text)


def read_partner_file(
    path: Path, parse: Callable[[str, str], Iterator[Record]], hint: str = ""
) -> Iterator[Record]:
    """Records `parse(text, file name)` finds in a UTF-8 file; a file that is not UTF-8 is one
    rejected record, its raw bytes kept (`hint` tells the partner how to fix it)."""
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")  # a byte-order mark is not part of the content
    except UnicodeDecodeError as exc:
        raw = data.decode("utf-8", errors="replace")
        yield Record(
            path.name, raw, problems=(Problem("(file)", f"not UTF-8 text: {exc.reason}{hint}"),)
        )
        return
    yield from parse(text, path.name)


def read_text(text: str, origin: str) -> Iterator[Record]:
    """Records from FHIR input given as text; `origin` names it in errors."""
    stripped = text.lstrip()
    if origin.endswith(".ndjson"):
        yield from _read_ndjson(text, origin)
    elif stripped.startswith("<"):
        yield from _read_xml(text, origin)
    else:
        try:
            data = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            yield Record(origin, text, problems=(Problem("(file)", f"not valid JSON: {exc}"),))
            return
        yield from read_json(data, origin, text)


def _read_ndjson(text: str, origin: str) -> Iterator[Record]:
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{origin}:{number}"
        try:
            data = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            yield Record(where, line, problems=(Problem("(line)", f"not valid JSON: {exc}"),))
            continue
        yield from read_json(data, where, line)


def read_json(data: Any, origin: str, raw: str) -> Iterator[Record]:
    """Records from one parsed JSON value: a resource or a Bundle of them."""
    if not isinstance(data, dict):
        yield Record(origin, raw, problems=(Problem("(root)", "expected a FHIR resource object"),))
        return
    if data.get("resourceType") != "Bundle":
        yield Record(origin, raw, resource=data)
        return
    problem = _bundle_problem(data)
    if problem:
        yield Record(origin, raw, problems=(problem,))
        return
    entries = [entry for entry in data.get("entry", []) if isinstance(entry, dict)]
    yield from _bundle_records(entries, data["type"], origin, data.get("id"))


def _bundle_problem(bundle: Mapping[str, Any]) -> Problem | None:
    kind = bundle.get("type")
    if kind not in BUNDLE_TYPES:
        return Problem("Bundle.type", f"{kind!r} is not a FHIR Bundle type")
    entries = bundle.get("entry") or []
    if not isinstance(entries, list) or not entries:
        return Problem("Bundle.entry", "at least one is required")
    if kind == "message":
        first = entries[0].get("resource") if isinstance(entries[0], dict) else None
        if not isinstance(first, dict) or first.get("resourceType") != "MessageHeader":
            return Problem(
                "Bundle.entry[0].resource", "a message Bundle must start with a MessageHeader"
            )
    return None


def _bundle_records(
    entries: list[dict[str, Any]], kind: str, origin: str, bundle_id: str | None
) -> Iterator[Record]:
    patients: dict[str, Mapping[str, Any]] = {}
    for entry in entries:
        resource = entry.get("resource")
        if isinstance(resource, dict) and resource.get("resourceType") == "Patient":
            if isinstance(entry.get("fullUrl"), str):
                patients[entry["fullUrl"]] = resource
            if isinstance(resource.get("id"), str):
                patients[f"Patient/{resource['id']}"] = resource
    correlation = bundle_id
    for index, entry in enumerate(entries):
        where = f"{origin}#entry[{index}]"
        resource = entry.get("resource")
        raw = orjson.dumps(entry).decode()
        if not isinstance(resource, dict):
            yield Record(
                where, raw, problems=(Problem(f"Bundle.entry[{index}].resource", "field required"),)
            )
            continue
        if kind == "message" and index == 0:
            correlation = resource.get("id") or bundle_id
            problems = _header_problems(resource)
            if problems:
                yield Record(where, raw, problems=problems)
                return  # without a valid header the message as a whole is not accepted
            continue
        yield Record(where, raw, resource, patients, correlation, in_bundle=True)


def _header_problems(header: Mapping[str, Any]) -> tuple[Problem, ...]:
    from schemas.fhir import problems_in

    problems = problems_in(header)
    if "eventCoding" not in header and "eventUri" not in header:
        problems.append(Problem("MessageHeader.event[x]", "field required"))
    return tuple(problems)


def _read_xml(text: str, origin: str) -> Iterator[Record]:
    try:
        root = etree.fromstring(
            text.encode(), parser=etree.XMLParser(resolve_entities=False, no_network=True)
        )
    except etree.XMLSyntaxError as exc:
        yield Record(origin, text, problems=(Problem("(file)", f"not well-formed XML: {exc}"),))
        return
    if etree.QName(root).localname != "Bundle":
        yield _xml_record(root, origin)
        return
    kind = _xml_value(root, "type")
    entries: list[dict[str, Any]] = []
    raws: list[str] = []
    for entry in root.findall(f"{{{FHIR_NS}}}entry"):
        raws.append(etree.tostring(entry, encoding="unicode"))
        holder = entry.find(f"{{{FHIR_NS}}}resource")
        child = holder[0] if holder is not None and len(holder) else None
        record = _xml_record(child, origin) if child is not None else None
        converted: dict[str, Any] = {}
        if record is not None and record.resource is not None:
            converted["resource"] = record.resource
        elif record is not None:
            # Keep the parse problem: the entry is reported, the rest still flow.
            converted["resource"] = {
                "resourceType": "(unreadable)",
                "problems": [str(p) for p in record.problems],
            }
        full_url = _xml_value(entry, "fullUrl")
        if full_url:
            converted["fullUrl"] = full_url
        entries.append(converted)
    bundle_id = _xml_value(root, "id")
    bundle = {"resourceType": "Bundle", "type": kind, "entry": entries, "id": bundle_id}
    problem = _bundle_problem(bundle)
    if problem:
        yield Record(origin, text, problems=(problem,))
        return
    for record, raw in zip(
        _bundle_records(entries, str(kind), origin, bundle_id), raws, strict=False
    ):
        unreadable = (
            record.resource is not None and record.resource.get("resourceType") == "(unreadable)"
        )
        if unreadable:
            assert record.resource is not None
            problems = tuple(Problem(record.origin, p) for p in record.resource["problems"])
            yield Record(record.origin, raw, problems=problems, in_bundle=True)
        else:
            yield Record(
                record.origin,
                raw,
                record.resource,
                record.bundled_patients,
                record.correlation,
                record.problems,
                in_bundle=True,
            )


def _xml_value(element: Any, name: str) -> str | None:
    child = element.find(f"{{{FHIR_NS}}}{name}")
    return None if child is None else child.get("value")


def _xml_record(element: Any, origin: str) -> Record:
    raw = etree.tostring(element, encoding="unicode")
    resource_type = etree.QName(element).localname
    if resource_type not in CARRIED:
        if resource_type in SUPPORTING_TYPES:
            return Record(origin, raw, resource={"resourceType": resource_type})
        return Record(
            origin, raw, problems=(Problem(resource_type, "resource type not carried by the hub"),)
        )
    module = importlib.import_module(f"fhir.resources.R4B.{CARRIED[resource_type][0]}")
    try:
        model = getattr(module, resource_type).model_validate_xml(raw)
    except (ValidationError, ValueError) as exc:
        return Record(
            origin, raw, problems=(Problem(resource_type, f"invalid FHIR XML: {_first_line(exc)}"),)
        )
    return Record(origin, raw, resource=orjson.loads(model.model_dump_json()))


def _first_line(exc: Exception) -> str:
    return " ".join(str(exc).split())[:300]
