"""What the HTTP ingest gateway decides about one request, with no I/O: accept it as envelopes or
refuse it with a FHIR OperationOutcome, and the bounded memory that makes a retry harmless.
"""

from __future__ import annotations

import hashlib
import re
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Literal

import orjson
from lxml import etree

from connectors.fhir_input import FHIR_NS, Record, read_json, read_text
from connectors.publish import Accepted, Ignored, Rejected, decide, passed_by
from schemas.codec import encode
from schemas.envelope import Envelope
from schemas.fhir import BUNDLE_TYPES, PARTNER_RESOURCE_TYPES, Problem
from schemas.vocabulary import PARTNER_SYSTEM
from services.domain.versions import Version, is_stale, stale_reason, version_of

MAX_DEPTH = 32
# Kafka's default message.max.bytes and the producer's max_request_size: 1 MiB per record.
BROKER_MAX_BYTES = 1024 * 1024
# Room for the record's key, headers and batch framing beside the encoded envelope.
RECORD_OVERHEAD_BYTES = 1024

BUNDLE_KINDS = ("message", "batch", "transaction", "collection")
JSON_MEDIA_TYPES = frozenset({"application/fhir+json", "application/json"})
XML_MEDIA_TYPES = frozenset({"application/fhir+xml"})

# FHIR issue-type codes (http://hl7.org/fhir/issue-type) used by the gateway.
IssueCode = Literal[
    "structure",
    "invalid",
    "security",
    "too-long",
    "not-supported",
    "processing",
    "conflict",
    "transient",
    "throttled",
    "timeout",
    "exception",
    "informational",
]
Severity = Literal["error", "warning", "information"]
BodyKind = Literal["json", "xml"]


@dataclass(frozen=True, slots=True)
class Issue:
    """One problem to report: where (shown to people), why, and the FHIRPath of the element."""

    code: IssueCode
    where: str
    message: str
    expression: str | None = None
    severity: Severity = "error"

    @property
    def diagnostics(self) -> str:
        """The sentence a partner's developer reads: "Appointment.status: 'bogus' is not …"."""
        return f"{self.where}: {self.message}"

    def as_problem(self) -> Problem:
        """The same problem in the form the dead-letter record carries."""
        return Problem(self.where, self.message)


def issue(code: IssueCode, problem: Problem) -> Issue:
    """An issue about a problem; element paths become its expression, "(body)" and such do not."""
    expression = None if problem.path.startswith("(") else problem.path
    return Issue(code, problem.path, problem.message, expression)


@dataclass(frozen=True, slots=True)
class RefusedRequest:
    """A request turned away: the HTTP status and every issue, and whether to dead-letter it."""

    status: int
    issues: tuple[Issue, ...]
    # 401/403 inputs come from a sender who is unknown or not trusted: not kept as theirs.
    dead_letter: bool = True
    retry_after: int = 0  # seconds the sender should wait before trying again (0: say nothing)

    def outcome(self) -> dict[str, Any]:
        """The FHIR OperationOutcome answering this refusal."""
        return operation_outcome(self.issues)

    def reason(self) -> str:
        """Every issue on one line, as the dead-letter record gives it."""
        return "; ".join(i.diagnostics for i in self.issues)


def refuse(status: int, code: IssueCode, where: str, message: str, **flags: bool) -> RefusedRequest:
    """A refusal with one issue."""
    return RefusedRequest(status, (issue(code, Problem(where, message)),), **flags)


@dataclass(frozen=True, slots=True)
class Publishable:
    """An accepted resource: its envelope, and the Kafka key and value it is published as.

    Encoded once, when admitted: the size check reads the bytes that are then sent.
    """

    origin: str
    envelope: Envelope
    key: bytes
    value: bytes


def publishable(accepted: Accepted) -> Publishable:
    """An accepted resource with its envelope encoded by the codec."""
    envelope = accepted.envelope
    return Publishable(accepted.origin, envelope, envelope.key(), encode(envelope))


@dataclass(frozen=True, slots=True)
class MessageFacts:
    """What a response message repeats of a request's MessageHeader: its id, and its event as
    FHIR JSON (`{"eventCoding": {...}}` or `{"eventUri": "..."}`)."""

    header_id: str | None
    event: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Admitted:
    """A request whose every resource passed: what to publish, how many Bundle entries were
    passed by, a warning for each of them, and (a message) its MessageHeader's facts."""

    accepted: tuple[Publishable, ...]
    ignored: int
    warnings: tuple[Issue, ...] = ()
    message: MessageFacts | None = None

    @property
    def event_ids(self) -> list[str]:
        """The envelopes' event ids, in input order."""
        return [str(a.envelope.event_id) for a in self.accepted]

    def answer(self) -> dict[str, Any]:
        """The 202 body, given once Kafka has acknowledged every envelope; with an
        OperationOutcome of warnings when entries were passed by."""
        body: dict[str, Any] = {
            "event_ids": self.event_ids,
            "accepted": len(self.accepted),
            "ignored": self.ignored,
        }
        if self.warnings:
            body["outcome"] = operation_outcome(self.warnings)
        return body

    def message_outcome(self) -> dict[str, Any]:
        """The $process-message answer: an OperationOutcome saying what was taken, then a warning
        per entry passed by."""
        ids = ", ".join(self.event_ids) or "none"
        taken = Issue(
            "informational",
            "Bundle",
            f"accepted {len(self.accepted)}, ignored {self.ignored}; event ids: {ids}",
            severity="information",
        )
        return operation_outcome((taken, *self.warnings))


def response_message(
    admitted: Admitted,
    endpoint: str,
    now: datetime,
    new_id: Callable[[], str] = lambda: str(uuid.uuid4()),
) -> dict[str, Any]:
    """The FHIR response message answering a processed message (synchronous messaging, FHIR's
    $process-message): a message Bundle whose MessageHeader repeats the request's event, answers
    its MessageHeader id with `response.code` ok, and points at the OperationOutcome saying what
    was taken (`response.details`). `endpoint` is the hub's $process-message address."""
    facts = admitted.message or MessageFacts(None)
    bundle_id, header_id, outcome_id = new_id(), new_id(), new_id()
    outcome = {"resourceType": "OperationOutcome", "id": outcome_id} | admitted.message_outcome()
    header: dict[str, Any] = {
        "resourceType": "MessageHeader",
        "id": header_id,
        **facts.event,
        "source": {"name": "concord", "endpoint": endpoint},
    }
    details = {"reference": f"urn:uuid:{outcome_id}"}
    if facts.header_id:
        header["response"] = {"identifier": facts.header_id, "code": "ok", "details": details}
    else:  # nothing to answer by id: the outcome is what the message is about
        header["focus"] = [details]
    return {
        "resourceType": "Bundle",
        "id": bundle_id,
        "type": "message",
        "timestamp": now.isoformat(timespec="seconds"),
        "entry": [
            {"fullUrl": f"urn:uuid:{header_id}", "resource": header},
            {"fullUrl": f"urn:uuid:{outcome_id}", "resource": outcome},
        ],
    }


def warning(ignored: Ignored) -> Issue:
    """The OperationOutcome warning for a Bundle entry passed by."""
    found = _ENTRY.search(ignored.origin)
    entry = f"Bundle.entry[{found.group(1)}]" if found else "Bundle.entry"
    element = "request.method" if ignored.method is not None else "resource"
    return Issue(
        "not-supported",
        entry,
        f"ignored: {ignored.reason()}",
        f"{entry}.{element}",
        severity="warning",
    )


def operation_outcome(issues: Iterable[Issue]) -> dict[str, Any]:
    """A FHIR R4 OperationOutcome with one issue per problem (an error unless said otherwise)."""
    entries = []
    for item in issues:
        entry: dict[str, Any] = {
            "severity": item.severity,
            "code": item.code,
            "diagnostics": item.diagnostics,
        }
        if item.expression:
            entry["expression"] = [item.expression]
        entries.append(entry)
    return {"resourceType": "OperationOutcome", "issue": entries}


# --- the request, step by step ------------------------------------------------------------------


def body_kind(content_type: str | None) -> BodyKind | RefusedRequest:
    """JSON or XML from the Content-Type header; 415 for anything else or a charset not UTF-8."""
    media, _, params = (content_type or "").partition(";")
    media = media.strip().lower()
    charset = _param(params, "charset")
    if charset is not None and charset.lower() not in ("utf-8", "utf8"):
        return refuse(415, "not-supported", "(Content-Type)", f"charset {charset!r}: use UTF-8")
    if media in JSON_MEDIA_TYPES:
        return "json"
    if media in XML_MEDIA_TYPES:
        return "xml"
    accepted = ", ".join(sorted(JSON_MEDIA_TYPES | XML_MEDIA_TYPES))
    shown = repr(media) if media else "missing"
    return refuse(415, "not-supported", "(Content-Type)", f"{shown}: send one of {accepted}")


def _param(params: str, name: str) -> str | None:
    for part in params.split(";"):
        key, _, value = part.partition("=")
        if key.strip().lower() == name:
            return value.strip().strip('"')
    return None


def nesting_depth(value: Any, limit: int = MAX_DEPTH) -> int:
    """How deeply objects and arrays nest (a scalar is 0); counting stops once past `limit`."""
    deepest = 0
    stack = [(value, 1)] if isinstance(value, dict | list) else []
    while stack:
        node, depth = stack.pop()
        deepest = max(deepest, depth)
        if deepest > limit:
            break
        children = node.values() if isinstance(node, dict) else node
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return deepest


def xml_depth(root: Any, limit: int = MAX_DEPTH) -> int:
    """How deeply XML elements nest (the root is 1); counting stops once past `limit`."""
    deepest = 0
    stack = [(root, 1)]
    while stack:
        element, depth = stack.pop()
        deepest = max(deepest, depth)
        if deepest > limit:
            break
        stack.extend((child, depth + 1) for child in element)
    return deepest


def _too_deep() -> RefusedRequest:
    return refuse(400, "structure", "(body)", f"nested deeper than {MAX_DEPTH} levels")


def parse_json(text: str) -> Any | RefusedRequest:
    """The JSON value of the body; 400 when it is malformed or nested too deeply."""
    try:
        data = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        # orjson stops at its own depth limit (1024) before our walk could count.
        if "depth" in str(exc) or "recursion" in str(exc):
            return _too_deep()
        return refuse(400, "structure", "(body)", f"not valid JSON: {exc}")
    if nesting_depth(data) > MAX_DEPTH:
        return _too_deep()
    return data


def parse_xml(data: bytes) -> Any | RefusedRequest:
    """The root element of FHIR XML; 400 when not well-formed, not FHIR, or nested too deeply."""
    parser = etree.XMLParser(resolve_entities=False, no_network=True)
    try:
        root = etree.fromstring(data, parser=parser)
    except etree.XMLSyntaxError as exc:
        return refuse(400, "structure", "(body)", f"not well-formed XML: {exc}")
    if etree.QName(root).namespace != FHIR_NS:
        return refuse(
            400, "structure", "(body)", f"the root element is not in the {FHIR_NS} namespace"
        )
    if xml_depth(root) > MAX_DEPTH:
        return _too_deep()
    return root


@dataclass(frozen=True, slots=True)
class Body:
    """The facts about a parsed body the route checks need, whatever its format."""

    resource_type: str | None
    bundle_type: str | None
    senders: tuple[str, ...]  # partner ids a message Bundle's MessageHeader.sender claims
    message: MessageFacts | None = None  # a message Bundle's MessageHeader id and event


def json_facts(data: Any) -> Body:
    """Resource type, Bundle type and claimed senders of a parsed JSON body."""
    if not isinstance(data, dict):
        return Body(None, None, ())
    resource_type = data.get("resourceType")
    bundle_type = data.get("type") if resource_type == "Bundle" else None
    senders: tuple[str, ...] = ()
    message = None
    entries = data.get("entry")
    if bundle_type == "message" and isinstance(entries, list) and entries:
        first = entries[0].get("resource") if isinstance(entries[0], dict) else None
        sender = first.get("sender") if isinstance(first, dict) else None
        identifier = sender.get("identifier") if isinstance(sender, dict) else None
        if isinstance(identifier, dict) and identifier.get("system") == PARTNER_SYSTEM:
            senders = (str(identifier.get("value")),)
        if isinstance(first, dict):
            header_id = first.get("id")
            event = {k: first[k] for k in ("eventCoding", "eventUri") if k in first}
            message = MessageFacts(header_id if isinstance(header_id, str) else None, event)
    return Body(
        resource_type if isinstance(resource_type, str) else None,
        bundle_type if isinstance(bundle_type, str) else None,
        senders,
        message,
    )


def xml_facts(root: Any) -> Body:
    """Resource type, Bundle type and claimed senders of a FHIR XML body."""
    resource_type = etree.QName(root).localname
    if resource_type != "Bundle":
        return Body(resource_type, None, ())
    bundle_type = _xml_value(root, "type")
    senders: tuple[str, ...] = ()
    message = None
    first = root.find(f"{{{FHIR_NS}}}entry")
    if bundle_type == "message" and first is not None:
        path = "/".join(
            f"{{{FHIR_NS}}}{n}" for n in ("resource", "MessageHeader", "sender", "identifier")
        )
        identifier = first.find(path)
        if identifier is not None and _xml_value(identifier, "system") == PARTNER_SYSTEM:
            senders = (str(_xml_value(identifier, "value")),)
        header = first.find(f"{{{FHIR_NS}}}resource/{{{FHIR_NS}}}MessageHeader")
        if header is not None:
            message = MessageFacts(_xml_value(header, "id"), _xml_event(header))
    return Body(resource_type, bundle_type, senders, message)


def _xml_event(header: Any) -> dict[str, Any]:
    """A MessageHeader's event[x] in XML, as FHIR JSON."""
    uri = _xml_value(header, "eventUri")
    if uri is not None:
        return {"eventUri": uri}
    coding = header.find(f"{{{FHIR_NS}}}eventCoding")
    if coding is None:
        return {}
    found = {name: _xml_value(coding, name) for name in ("system", "version", "code", "display")}
    return {"eventCoding": {name: value for name, value in found.items() if value is not None}}


def _xml_value(element: Any, name: str) -> str | None:
    child = element.find(f"{{{FHIR_NS}}}{name}")
    return None if child is None else child.get("value")


def route_type_refusal(route_type: str | None) -> RefusedRequest | None:
    """404 for a resource type the gateway does not take at /fhir/{resourceType}."""
    if route_type is None or route_type in PARTNER_RESOURCE_TYPES:
        return None
    allowed = ", ".join(PARTNER_RESOURCE_TYPES)
    return refuse(
        404,
        "not-supported",
        "(path)",
        f"/fhir/{route_type} is not accepted: post {allowed} to /fhir/{{resourceType}}, Bundles to /fhir",
    )


def body_refusal(body: Body, route_type: str | None, partner: str) -> RefusedRequest | None:
    """400 when the body does not fit its path, 422 for a Bundle type not taken, 403 for a sender not the partner."""
    if route_type is not None and body.resource_type != route_type:
        found = repr(body.resource_type) if body.resource_type else "missing"
        return refuse(400, "invalid", "resourceType", f"{found} but the path is /fhir/{route_type}")
    if route_type is None and body.resource_type != "Bundle":
        found = repr(body.resource_type) if body.resource_type else "missing"
        return refuse(
            400,
            "invalid",
            "resourceType",
            f"{found}: /fhir takes a Bundle; post one resource to /fhir/{{resourceType}}",
        )
    if (
        route_type is None
        and body.bundle_type in BUNDLE_TYPES
        and body.bundle_type not in BUNDLE_KINDS
    ):
        kinds = ", ".join(BUNDLE_KINDS)
        return refuse(
            422,
            "not-supported",
            "Bundle.type",
            f"{body.bundle_type!r} is not accepted: send {kinds}",
        )
    others = [s for s in body.senders if s != partner]
    if others:
        return refuse(
            403,
            "security",
            "Bundle.entry[0].resource.sender.identifier",
            f"names partner {others[0]!r}, but you signed in as {partner!r}: a partner publishes only as itself",
            dead_letter=False,
        )
    return None


_ENTRY = re.compile(r"#entry\[(\d+)\]$")


def _located(record: Record, problem: Problem, code: IssueCode) -> Issue:
    """An issue about a record, placed at its Bundle entry when it came from one."""
    found = _ENTRY.search(record.origin)
    if found is None:
        return issue(code, problem)
    entry = f"Bundle.entry[{found.group(1)}]"
    path = problem.path
    resource_type = str((record.resource or {}).get("resourceType", ""))
    if path.startswith("Bundle."):
        return Issue(code, path, problem.message, path)
    if resource_type and (
        path == resource_type or path.startswith((f"{resource_type}.", f"{resource_type}["))
    ):
        expression = f"{entry}.resource{path[len(resource_type) :]}"
    else:
        expression = f"{entry}.resource"
    where = entry if path in (record.origin, "(file)", "(root)") else f"{entry}: {path}"
    return Issue(code, where, problem.message, expression)


def _type_problem(record: Record) -> Problem | None:
    """Resource types a partner may not send here (hub output, MessageHeader out of place)."""
    resource_type = str((record.resource or {}).get("resourceType"))
    if record.resource is None or resource_type in PARTNER_RESOURCE_TYPES:
        return None
    if passed_by(record) is not None:
        return None
    allowed = ", ".join(PARTNER_RESOURCE_TYPES)
    return Problem(resource_type, f"not accepted from partners (send {allowed})")


def _decisions(
    records: Iterable[Record], partner: str, now: datetime | None
) -> Iterator[tuple[Record, Accepted | Rejected | Ignored]]:
    for record in records:
        problem = _type_problem(record)
        if problem is not None:
            yield record, Rejected(record.origin, record.raw, (problem,))
            continue
        try:
            yield record, decide(record, partner, now)
        except ValueError as exc:  # the envelope model refused it; a bad input, never a 500
            resource_type = str((record.resource or {}).get("resourceType"))
            message = f"cannot be carried as an event ({type(exc).__name__})"
            yield record, Rejected(record.origin, record.raw, (Problem(resource_type, message),))


def admit(
    records: Iterable[Record], partner: str, now: datetime | None = None
) -> Admitted | RefusedRequest:
    """Every record accepted (as envelopes) or the request refused with every problem: all or nothing."""
    accepted: list[Accepted] = []
    warnings: list[Issue] = []
    issues: list[Issue] = []
    for record, decision in _decisions(records, partner, now):
        if isinstance(decision, Rejected):
            issues += [_located(record, p, "invalid") for p in decision.problems]
        elif isinstance(decision, Accepted):
            accepted.append(decision)
        else:
            warnings.append(warning(decision))
    if issues:
        return RefusedRequest(422, tuple(issues))
    return Admitted(tuple(publishable(a) for a in accepted), len(warnings), tuple(warnings))


def record_size(item: Publishable) -> int:
    """What an envelope costs the broker: its encoded bytes, key and record framing."""
    return len(item.value) + len(item.key) + RECORD_OVERHEAD_BYTES


def oversize_refusal(admitted: Admitted, limit: int = BROKER_MAX_BYTES) -> RefusedRequest | None:
    """413 when any envelope would exceed the broker's message limit: retrying cannot help."""
    issues = []
    for accepted in admitted.accepted:
        size = record_size(accepted)
        if size > limit:
            message = f"as an event this is {size} bytes, over the broker's limit of {limit}"
            issues.append(Issue("too-long", _where(accepted), message, None))
    return RefusedRequest(413, tuple(issues)) if issues else None


def _where(accepted: Publishable) -> str:
    """Where an accepted resource sits in the request: its Bundle entry, or its type."""
    found = _ENTRY.search(accepted.origin)
    return f"Bundle.entry[{found.group(1)}]" if found else accepted.envelope.resource_type


def parse_body(
    body: bytes, kind: BodyKind, origin: str
) -> tuple[Body, Iterable[Record]] | RefusedRequest:
    """The body's facts and its records, or a 400 for text that is not UTF-8, JSON or FHIR XML."""
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        return refuse(
            400, "structure", "(body)", f"not UTF-8 text: {exc.reason} at byte {exc.start}"
        )
    if kind == "json":
        data = parse_json(text)
        if isinstance(data, RefusedRequest):
            return data
        return json_facts(data), read_json(data, origin, text)
    root = parse_xml(text.encode())
    if isinstance(root, RefusedRequest):
        return root
    return xml_facts(root), read_text(text, origin)


def message_refusal(body: Body) -> RefusedRequest | None:
    """422 when $process-message is given a Bundle that is not a message."""
    if body.bundle_type == "message":
        return None
    found = repr(body.bundle_type) if body.bundle_type else "missing"
    return refuse(
        422,
        "not-supported",
        "Bundle.type",
        f"{found}: $process-message takes a message Bundle; post other Bundles to /fhir",
    )


def assess(
    body: bytes,
    content_type: str | None,
    route_type: str | None,
    partner: str,
    now: datetime | None = None,
    *,
    message: bool = False,
    correlation: str | None = None,
) -> Admitted | RefusedRequest:
    """Everything the gateway decides about a signed-in partner's POST, before any I/O.

    `message`: the POST is $process-message, which takes message Bundles only; `correlation`
    (its X-Correlation-Id) replaces the MessageHeader id as the envelopes' correlation.
    """
    origin = f"POST /fhir/{route_type}" if route_type else "POST /fhir"
    kind = route_type_refusal(route_type) or body_kind(content_type)
    if isinstance(kind, RefusedRequest):
        return kind
    parsed = parse_body(body, kind, origin)
    if isinstance(parsed, RefusedRequest):
        return parsed
    facts, records = parsed
    if correlation is not None:
        records = (replace(record, correlation=correlation) for record in records)
    verdict = (
        body_refusal(facts, route_type, partner)
        or (message_refusal(facts) if message else None)
        or admit(records, partner, now)
    )
    if isinstance(verdict, RefusedRequest):
        return verdict
    if message:
        verdict = replace(verdict, message=facts.message)
    return oversize_refusal(verdict) or verdict


# --- versions -----------------------------------------------------------------------------------

# (partner, resourceType, id): one resource of one partner, whose versions are ordered.
VersionKey = tuple[str, str, str]


def version_key(partner: str, envelope: Envelope) -> VersionKey:
    """The resource an envelope carries a version of; one without an id is only its own content."""
    resource_id = envelope.resource.get("id")
    if isinstance(resource_id, str) and resource_id:
        return (partner, envelope.resource_type, resource_id)
    return (partner, envelope.resource_type, f"#{envelope.event_id}")


def envelope_version(envelope: Envelope) -> Version:
    """The version an envelope carries, ordered exactly as the worker orders it."""
    return version_of(envelope.resource, str(envelope.event_id), envelope.occurred_at)


@dataclass(frozen=True, slots=True)
class Published:
    """Every resource of the request is the latest version already published: nothing new."""


def check_versions(
    admitted: Admitted, partner: str, latest: Callable[[VersionKey], Version | None]
) -> Published | RefusedRequest | None:
    """A request against the latest version published of each of its resources.

    Published when it repeats them all; 409 naming each resource that is older than the
    latest (a stale version is refused, never published); None when it is to be published.
    Content equal to an older version is not a repeat: moving an appointment back is a change.
    """
    issues: list[Issue] = []
    repeated = 0
    for accepted in admitted.accepted:
        envelope = accepted.envelope
        held = latest(version_key(partner, envelope))
        if held is None:
            continue
        incoming = envelope_version(envelope)
        if incoming.event_id == held.event_id:
            repeated += 1
        elif is_stale(incoming, held):
            path, _, message = stale_reason(envelope.resource_type, incoming, held).partition(": ")
            where = _where(accepted)
            if where.startswith("Bundle."):
                issues.append(
                    Issue("conflict", f"{where}: {path}", message, f"{where}.resource.meta")
                )
            else:
                issues.append(Issue("conflict", path, message, path))
    if issues:
        return RefusedRequest(409, tuple(issues))
    return Published() if repeated == len(admitted.accepted) else None


# --- idempotency --------------------------------------------------------------------------------


def fingerprint(path: str, body: bytes) -> str:
    """What makes two requests the same request: where they were posted and the exact body."""
    return hashlib.sha256(path.encode() + b"\n" + body).hexdigest()


IDEMPOTENCY_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")


def key_refusal(key: str | None, header: str = "Idempotency-Key") -> RefusedRequest | None:
    """400 for an Idempotency-Key (or another id header: X-Request-Id, X-Correlation-Id) that is
    empty, too long or not printable ASCII."""
    if key is None or IDEMPOTENCY_KEY.match(key):
        return None
    return refuse(
        400, "invalid", f"({header})", "use 1 to 255 printable ASCII characters, e.g. a UUID"
    )


@dataclass(frozen=True, slots=True)
class Answer:
    """An HTTP answer worth replaying: its status and JSON body."""

    status: int
    body: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Replay:
    """The request was seen before: give the same answer again."""

    answer: Answer


@dataclass(frozen=True, slots=True)
class Mismatch:
    """The key was used before for a different request."""


@dataclass(frozen=True, slots=True)
class Busy:
    """The key's first request is still being answered."""


@dataclass(slots=True)
class _Entry:
    fingerprint: str
    answer: Answer | None  # None while the first request is in flight
    expires_at: float


class LatestVersions:
    """The latest version published of each partner resource, at most `max_keys` of them (the
    least recently published forgotten first). In memory and per process:
    connectors/gateway/README.md says what survives a restart."""

    def __init__(self, max_keys: int = 100_000) -> None:
        self._max_keys = max_keys
        self._held: OrderedDict[VersionKey, Version] = OrderedDict()

    def __len__(self) -> int:
        return len(self._held)

    def check(self, partner: str, admitted: Admitted) -> Published | RefusedRequest | None:
        """`check_versions` against what this gateway has published."""
        return check_versions(admitted, partner, self._held.get)

    def record(self, partner: str, admitted: Admitted) -> None:
        """Remember what Kafka has acknowledged, where it is newer than what is held."""
        for accepted in admitted.accepted:
            key, version = (
                version_key(partner, accepted.envelope),
                envelope_version(accepted.envelope),
            )
            held = self._held.get(key)
            if held is None or held < version:
                self._held[key] = version
            self._held.move_to_end(key)
        while len(self._held) > self._max_keys:
            self._held.popitem(last=False)


class IdempotencyMemory:
    """Key → answer for `ttl_s`, at most `max_keys` of them; oldest forgotten first.

    In memory and per process: several gateway replicas do not share it, which is safe
    because event ids are content-derived, so a resubmission is a duplicate downstream.
    """

    def __init__(
        self,
        ttl_s: float = 24 * 60 * 60,
        max_keys: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._ttl_s, self._max_keys, self._clock = ttl_s, max_keys, clock
        self._entries: OrderedDict[str, _Entry] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def begin(self, key: str, print_: str) -> Replay | Mismatch | Busy | None:
        """What to do with a request under `key`; None means go ahead (it is now in flight)."""
        now = self._clock()
        self._forget_expired(now)
        entry = self._entries.get(key)
        if entry is None:
            self._remember(key, _Entry(print_, None, now + self._ttl_s))
            return None
        if entry.fingerprint != print_:
            return Mismatch()
        if entry.answer is None:
            return Busy()
        return Replay(entry.answer)

    def finish(self, key: str, print_: str, answer: Answer | None) -> None:
        """Keep the answer for replay, or (None) forget the key so a retry runs afresh."""
        if answer is None:
            self._entries.pop(key, None)
            return
        self._entries.pop(key, None)
        self._remember(key, _Entry(print_, answer, self._clock() + self._ttl_s))

    def _remember(self, key: str, entry: _Entry) -> None:
        self._entries[key] = entry
        while len(self._entries) > self._max_keys:
            self._entries.popitem(last=False)

    def _forget_expired(self, now: float) -> None:
        # Entries are kept in the order they were last stored, so the oldest expire first.
        while self._entries:
            key, entry = next(iter(self._entries.items()))
            if entry.expires_at > now:
                return
            del self._entries[key]
