"""Read partner FHIR input — JSON resources, Bundles, NDJSON and XML — into records.

A record is one resource with where it came from, its raw text (kept for the
dead-letter topic) and, inside a Bundle, the Patients that its references may
point at. Parsing problems are attached to the record, never raised, so one bad
entry does not stop the rest of a file.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from copy import deepcopy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import fhir.resources.R4B
import orjson
from fhir_core.utils import (
    determine_version_prefix,
    get_fhir_type_name,
    is_list_type,
    is_primitive_type,
)
from lxml import etree
from pydantic import ValidationError

from schemas.fhir import BUNDLE_TYPES, CARRIED, STU3, Problem, stu3_problem

FHIR_NS = "http://hl7.org/fhir"
XHTML_NS = "http://www.w3.org/1999/xhtml"


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
    request_method: str | None = None  # a Bundle entry's request.method, when it has one
    ignored_because: str | None = None  # set for input the hub passes by with a warning

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
    yield from read_partner_bytes(path.read_bytes(), path.name, parse, hint)


def read_partner_bytes(
    data: bytes, origin: str, parse: Callable[[str, str], Iterator[Record]], hint: str = ""
) -> Iterator[Record]:
    """`read_partner_file` for bytes already read; `origin` names them in errors."""
    try:
        text = data.decode("utf-8-sig")  # a byte-order mark is not part of the content
    except UnicodeDecodeError as exc:
        raw = data.decode("utf-8", errors="replace")
        yield Record(
            origin, raw, problems=(Problem("(file)", f"not UTF-8 text: {exc.reason}{hint}"),)
        )
        return
    yield from parse(text, origin)


def read_text(text: str, origin: str) -> Iterator[Record]:
    """Records from FHIR input given as text; `origin` names it in errors."""
    if text.lstrip().startswith("<") and not origin.endswith(".ndjson"):
        yield from _read_xml(text, origin)
        return
    for item in json_values(text, origin, lines=origin.endswith(".ndjson")):
        if isinstance(item, Record):
            yield item
        else:
            yield from read_json(item.value, item.origin, item.raw)


@dataclass(frozen=True, slots=True)
class JsonValue:
    """One JSON value of partner text: where it is (file, or file:line), its text, the value."""

    origin: str
    raw: str
    value: Any


def json_values(
    text: str, origin: str, *, lines: bool | None, expected: str = ""
) -> Iterator[JsonValue | Record]:
    """The JSON values of partner text: one per line of NDJSON (`lines` True), the one document
    (False), or whichever the text is (None: a text that does not parse whole but whose first
    line does is NDJSON). A document that does not parse is one rejected Record, not one per
    line; `expected` says which shapes were expected."""
    if lines is None:
        if not text.strip():
            return  # an empty feed holds no events
        try:
            yield JsonValue(origin, text, orjson.loads(text))
            return
        except orjson.JSONDecodeError as exc:
            first = next((line for line in text.splitlines() if line.strip()), "")
            if not _parses(first):
                yield _not_json(origin, text, "(file)", exc, expected)
                return
        lines = True
    if not lines:
        try:
            yield JsonValue(origin, text, orjson.loads(text))
        except orjson.JSONDecodeError as exc:
            yield _not_json(origin, text, "(file)", exc, expected)
        return
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{origin}:{number}"
        try:
            yield JsonValue(where, line, orjson.loads(line))
        except orjson.JSONDecodeError as exc:
            yield _not_json(where, line, "(line)", exc, "")


def _parses(text: str) -> bool:
    try:
        orjson.loads(text)
    except orjson.JSONDecodeError:
        return False
    return True


def _not_json(
    origin: str, raw: str, element: str, exc: orjson.JSONDecodeError, expected: str
) -> Record:
    more = f" ({expected})" if expected else ""
    return Record(origin, raw, problems=(Problem(element, f"not valid JSON: {exc}{more}"),))


def read_json(data: Any, origin: str, raw: str) -> Iterator[Record]:
    """Records from one parsed JSON value: a resource or a Bundle of them."""
    if not isinstance(data, dict):
        yield Record(origin, raw, problems=(Problem("(root)", "expected a FHIR resource object"),))
        return
    if data.get("resourceType") != "Bundle":
        stu3 = stu3_problem(data)
        if stu3 is not None:
            yield Record(origin, raw, problems=(stu3,))
            return
        yield Record(origin, raw, resource=data)
        return
    problems = _bundle_problems(data)
    if problems:
        yield Record(origin, raw, problems=problems)
        return
    entries = data["entry"]
    raws = [orjson.dumps(entry).decode() for entry in entries]
    yield from _bundle_records(entries, raws, data["type"], origin, data.get("id"))


def _bundle_problems(bundle: Mapping[str, Any]) -> tuple[Problem, ...]:
    """What makes a Bundle unacceptable as a whole; () when its entries may be read one by one."""
    kind = bundle.get("type")
    if kind not in BUNDLE_TYPES:
        return (Problem("Bundle.type", f"{kind!r} is not a FHIR Bundle type"),)
    entries = bundle.get("entry") or []
    if not isinstance(entries, list) or not entries:
        return (Problem("Bundle.entry", "at least one is required"),)
    if kind == "message":
        first = entries[0].get("resource") if isinstance(entries[0], dict) else None
        if not isinstance(first, dict) or first.get("resourceType") != "MessageHeader":
            return (
                Problem(
                    "Bundle.entry[0].resource", "a message Bundle must start with a MessageHeader"
                ),
            )
    return _stu3_entry_problems(entries) or _same_resource_problems(entries)


def _stu3_entry_problems(entries: list[Any]) -> tuple[Problem, ...]:
    """The entries that are FHIR STU3: a Bundle holding any is refused whole, never read as R4."""
    problems = []
    for index, entry in enumerate(entries):
        resource = entry.get("resource") if isinstance(entry, dict) else None
        found = stu3_problem(resource) if isinstance(resource, dict) else None
        if found is not None:
            resource_type = str(resource.get("resourceType")) if resource else ""
            element = found.path.removeprefix(resource_type)
            where = f"Bundle.entry[{index}].resource{element}"
            message = STU3 if element else f"{resource_type}: {STU3}"
            problems.append(Problem(where, message))
    return tuple(problems)


def _same_resource_problems(entries: list[Any]) -> tuple[Problem, ...]:
    """Entries that share a fullUrl, or a resource type and id.

    A reference inside the Bundle is resolved by either; two entries answering to one
    name would let a reference reach either of them (an appointment could be attached
    to the wrong one of two patients), so such a Bundle is refused whole. The values are
    not repeated: a resource id may be a person's local number.
    """
    first_with: dict[str, tuple[int, str]] = {}
    problems = []
    for index, entry in enumerate(entries):
        for name, element in _entry_names(entry):
            other, other_element = first_with.setdefault(name, (index, element))
            if other == index:
                continue
            if element != other_element:
                same = "name (a fullUrl and a resource type and id)"
            else:
                same = "fullUrl" if element == "fullUrl" else "resource type and id"
            problems.append(
                Problem(
                    f"Bundle.entry[{index}].{element}",
                    f"the same {same} as Bundle.entry[{other}]: each entry must be a different resource",
                )
            )
    return tuple(problems)


def _entry_names(entry: Any) -> Iterator[tuple[str, str]]:
    """The names a reference may resolve an entry by, each with the element it comes from."""
    if not isinstance(entry, dict):
        return
    if isinstance(entry.get("fullUrl"), str):
        yield entry["fullUrl"], "fullUrl"
    resource = entry.get("resource")
    if isinstance(resource, dict):
        kind, resource_id = resource.get("resourceType"), resource.get("id")
        if isinstance(kind, str) and isinstance(resource_id, str):
            yield f"{kind}/{resource_id}", "resource.id"


def _bundle_records(
    entries: list[Any],
    raws: list[str],
    kind: str,
    origin: str,
    bundle_id: str | None,
    *,
    unreadable: Mapping[int, tuple[Problem, ...]] | None = None,
) -> Iterator[Record]:
    """A record per entry (a message's header is checked, not carried); `raws` are the entries'
    own text and `unreadable` the problems of entries that could not be read (XML)."""
    unreadable = unreadable or {}
    patients: dict[str, Mapping[str, Any]] = {}
    for index, entry in enumerate(entries):
        resource = entry.get("resource") if isinstance(entry, dict) else None
        if index in unreadable or not isinstance(resource, dict):
            continue
        if resource.get("resourceType") == "Patient":
            for name, _element in _entry_names(entry):
                patients[name] = resource
    correlation = bundle_id
    for index, entry in enumerate(entries):
        where, raw = f"{origin}#entry[{index}]", raws[index]
        resource = entry.get("resource") if isinstance(entry, dict) else None
        method = _request_method(entry)
        header = kind == "message" and index == 0
        if index in unreadable or not isinstance(resource, dict):
            missing = (Problem(f"Bundle.entry[{index}].resource", "field required"),)
            problems = unreadable.get(index, missing)
        elif header:
            correlation = resource.get("id") or bundle_id
            problems = _header_problems(resource) or _focus_problems(resource, entries)
            if not problems:
                continue  # a valid header is checked, not carried
        else:
            resource = _known_by_full_url(resource, entry)
            yield Record(
                where, raw, resource, patients, correlation, in_bundle=True, request_method=method
            )
            continue
        yield Record(where, raw, problems=problems, in_bundle=True, request_method=method)
        if header:
            return  # without a valid header the message as a whole is not accepted


_URN_UUID = re.compile(r"^urn:uuid:([0-9a-fA-F]{8}(?:-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12})$")


def _known_by_full_url(resource: dict[str, Any], entry: Mapping[str, Any]) -> dict[str, Any]:
    """A resource with no id, in an entry whose fullUrl is a `urn:uuid:`, known by that uuid.

    Booking messages (BaRS) create an Appointment this way: the uuid is the only name the
    sender gives it, so it is what a later update will be matched by. A Patient keeps no id:
    its id would be the partner's own patient number, which a message's uuid is not.
    """
    full_url = entry.get("fullUrl")
    found = _URN_UUID.match(full_url) if isinstance(full_url, str) else None
    if found is None or "id" in resource or resource.get("resourceType") == "Patient":
        return resource
    return {**resource, "id": found.group(1).lower()}


def _request_method(entry: Any) -> str | None:
    request = entry.get("request") if isinstance(entry, dict) else None
    method = request.get("method") if isinstance(request, dict) else None
    return method if isinstance(method, str) else None


def _focus_problems(header: Mapping[str, Any], entries: list[Any]) -> tuple[Problem, ...]:
    """A MessageHeader.focus that names no entry of the message: what it is about is missing."""
    names = {name for entry in entries for name, _element in _entry_names(entry)}
    problems = []
    for index, focus in enumerate(header.get("focus") or ()):
        reference = focus.get("reference") if isinstance(focus, dict) else None
        if isinstance(reference, str) and reference not in names:
            problems.append(
                Problem(
                    f"MessageHeader.focus[{index}]",
                    "names no entry of this message: send the resource it is about in the Bundle",
                )
            )
    return tuple(problems)


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
    root_problem = _namespace_problem(root, etree.QName(root).localname)
    if root_problem is not None:
        yield Record(origin, text, problems=(root_problem,))
        return
    if etree.QName(root).localname != "Bundle":
        yield _xml_record(root, origin)
        return
    entries: list[dict[str, Any]] = []
    raws: list[str] = []
    unreadable: dict[int, tuple[Problem, ...]] = {}
    for index, entry in enumerate(root.findall(f"{{{FHIR_NS}}}entry")):
        raws.append(etree.tostring(entry, encoding="unicode"))
        converted: dict[str, Any] = {}
        full_url = _xml_value(entry, "fullUrl")
        if full_url:
            converted["fullUrl"] = full_url
        holder = entry.find(f"{{{FHIR_NS}}}resource")
        child = None if holder is None else next((c for c in holder if _is_element(c)), None)
        if child is not None:
            record = _xml_record(child, origin, in_bundle=True)
            if record.resource is not None:
                converted["resource"] = record.resource
            else:
                # What can be read of it still counts: a message's header, a duplicated id, STU3.
                converted["resource"] = _xml_outline(child)
                unreadable[index] = record.problems
        method = entry.find(f"{{{FHIR_NS}}}request/{{{FHIR_NS}}}method")
        if method is not None:
            converted["request"] = {"method": method.get("value")}
        entries.append(converted)
    kind, bundle_id = _xml_value(root, "type"), _xml_value(root, "id")
    bundle = {"resourceType": "Bundle", "type": kind, "entry": entries, "id": bundle_id}
    problems = _bundle_problems(bundle)
    if problems:
        yield Record(origin, text, problems=problems)
        return
    yield from _bundle_records(entries, raws, str(kind), origin, bundle_id, unreadable=unreadable)


def _is_element(node: Any) -> bool:
    """True for an element; False for a comment or processing instruction."""
    return isinstance(node.tag, str)


def _xml_value(element: Any, name: str) -> str | None:
    child = element.find(f"{{{FHIR_NS}}}{name}")
    return None if child is None else child.get("value")


def _xml_outline(element: Any) -> dict[str, Any]:
    """What can be told of a resource without reading it as R4: its type, id, profiles and the
    names of its elements (enough to tell STU3, or two entries with one id)."""
    outline: dict[str, Any] = {etree.QName(c).localname: None for c in element if _is_element(c)}
    profiles = element.findall(f"{{{FHIR_NS}}}meta/{{{FHIR_NS}}}profile")
    outline.update(
        resourceType=etree.QName(element).localname,
        id=_xml_value(element, "id"),
        meta={"profile": [p.get("value") for p in profiles]},
    )
    return outline


def _xml_record(element: Any, origin: str, *, in_bundle: bool = False) -> Record:
    raw = etree.tostring(element, encoding="unicode")
    resource_type = etree.QName(element).localname
    stu3 = stu3_problem(_xml_outline(element))
    if stu3 is None and in_bundle and resource_type not in CARRIED:
        return Record(origin, raw, resource={"resourceType": resource_type})  # publish decides
    problem = stu3 or _r4_problem(element, resource_type)
    if problem is not None:
        return Record(origin, raw, problems=(problem,))
    model = _model(resource_type)
    try:
        parsed = model.model_validate_xml(_without_comments(element))
    except (ValidationError, ValueError) as exc:
        return Record(
            origin, raw, problems=(Problem(resource_type, f"invalid FHIR XML: {_first_line(exc)}"),)
        )
    except Exception as exc:  # the reader raises assorted types on XML the walk did not foresee
        message = f"invalid FHIR XML: cannot be read ({type(exc).__name__})"
        return Record(origin, raw, problems=(Problem(resource_type, message),))
    return Record(origin, raw, resource=orjson.loads(parsed.model_dump_json()))


def _r4_problem(element: Any, resource_type: str) -> Problem | None:
    """Why the element is not an R4 resource of a type the hub carries; None when it is."""
    if resource_type not in CARRIED:
        return Problem(resource_type, "resource type not carried by the hub")
    model = _model(resource_type)
    return _namespace_problem(element, resource_type) or _shape_problem(
        element, model, resource_type
    )


def _without_comments(element: Any) -> str:
    """The element as text with its comments left out.

    fhir.resources keeps a comment as an extension of the element after it, which the
    models then refuse beside `id` (the R4 specification's own examples comment there);
    comments carry nothing the hub reads.
    """
    copy = deepcopy(element)
    etree.strip_elements(copy, etree.Comment, with_tail=False)
    return str(etree.tostring(copy, encoding="unicode"))


# fhir.resources reads FHIR XML by looking each element up in the model of its parent, and
# raises KeyError, AttributeError and the like on anything a schema-valid R4 document never
# holds (an element of another FHIR version, a processing instruction, a prefixed namespace).
# The walk below finds the first such element, so the partner is told which one it is.
_VERSION_PREFIX = determine_version_prefix(fhir.resources.R4B.__name__)


def _namespace_problem(element: Any, path: str, namespace: str = FHIR_NS) -> Problem | None:
    """A problem when the element is not in `namespace` declared as the default (no prefix)."""
    if etree.QName(element).namespace != namespace or element.nsmap.get(None) != namespace:
        return Problem(path, f"must be in the namespace {namespace}, declared with no prefix")
    return None


def _shape_problem(element: Any, model: Any, path: str) -> Problem | None:
    """The first child of `element` that is not an element of `model` as FHIR R4 defines it."""
    aliases = model.get_alias_mapping()
    seen: set[str] = set()
    for child in element:
        if isinstance(child, etree._Comment):
            continue
        if not _is_element(child):
            return Problem(path, "holds something other than elements and comments")
        name = etree.QName(child).localname
        where = f"{path}.{name}"
        field = model.model_fields.get(aliases.get(name, ""))
        if field is None or name == "fhir_comments":
            return Problem(where, f"not an element of {path} in FHIR R4")
        if name in seen and not is_list_type(field):
            return Problem(where, "appears more than once: FHIR allows one")
        seen.add(name)
        problem = _field_problem(child, field, where)
        if problem is not None:
            return problem
    return None


def _field_problem(element: Any, field: Any, path: str) -> Problem | None:
    """A problem with one element whose definition is `field`, or with anything inside it."""
    type_name = get_fhir_type_name(field, prefix=_VERSION_PREFIX)
    if type_name == "xhtml":
        return _namespace_problem(element, path, XHTML_NS)
    problem = _namespace_problem(element, path)
    if problem is not None:
        return problem
    if type_name == "Resource":
        return _inner_resource_problem(element, path)
    # A primitive's value is an attribute; as elements it holds only extensions (and an id).
    model = _model("Element" if is_primitive_type(field) else type_name)
    return _shape_problem(element, model, path)


def _inner_resource_problem(element: Any, path: str) -> Problem | None:
    """A problem with a resource held inside another (`contained`, a Bundle entry's `resource`)."""
    children = [c for c in element if not isinstance(c, etree._Comment)]
    if len(children) != 1 or not _is_element(children[0]):
        return Problem(path, "must hold exactly one resource")
    resource_type = etree.QName(children[0]).localname
    where = f"{path}.{resource_type}"
    try:
        model = _model(resource_type)
    except ValueError:
        return Problem(where, "not a FHIR R4 resource type")
    return _namespace_problem(children[0], where) or _shape_problem(children[0], model, where)


def _model(type_name: str) -> Any:
    """The fhir.resources R4B model of a resource or datatype; ValueError for an unknown name."""
    return fhir.resources.R4B.get_fhir_model_class(type_name)


def _first_line(exc: Exception) -> str:
    return " ".join(str(exc).split())[:300]
