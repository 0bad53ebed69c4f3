"""How the gateway answers, decided from the request with no I/O: the format (`_format`, then
`Accept`), the form of an accepted create (`Prefer: return=...`), the address it is reached at,
and a FHIR answer written as JSON or XML.
"""

from __future__ import annotations

import re
from typing import Any, Literal

import orjson
from fhir.resources.R4B import get_fhir_model_class

from connectors.gateway.rules import RefusedRequest, refuse

Format = Literal["json", "xml"]
PreferReturn = Literal["minimal", "representation", "OperationOutcome"]
# What a 2xx answer to an accepted POST carries: the gateway's JSON summary, nothing, the
# resource as published, or the same facts as a FHIR OperationOutcome.
AcceptedForm = Literal["summary", "minimal", "representation", "outcome"]

FHIR_JSON = "application/fhir+json"
FHIR_XML = "application/fhir+xml"
# The names FHIR gives the two formats, in `_format` and in `Accept` (http.html#mime-type).
FORMAT_NAMES: dict[str, Format] = {
    "json": "json",
    "application/json": "json",
    FHIR_JSON: "json",
    "xml": "xml",
    "text/xml": "xml",
    "application/xml": "xml",
    FHIR_XML: "xml",
    # Wildcards take the default.
    "*/*": "json",
    "application/*": "json",
}
PREFER_RETURNS: tuple[PreferReturn, ...] = ("minimal", "representation", "OperationOutcome")
_HOST = re.compile(r"^[A-Za-z0-9.\-]+(:\d{1,5})?$|^\[[0-9A-Fa-f:.]+\](:\d{1,5})?$")


def _unacceptable(where: str, asked: str) -> RefusedRequest:
    # Not dead-lettered: nothing is wrong with the input, and it was not read.
    return refuse(
        406,
        "not-supported",
        where,
        f"{asked!r}: the gateway answers in {FHIR_JSON} or {FHIR_XML} (_format json or xml)",
        dead_letter=False,
    )


def answer_format(format_param: str | None, accept: str | None) -> Format | RefusedRequest:
    """The format to answer in: `_format` when given, else the best `Accept` the gateway can
    write, else JSON; 406 when the caller accepts neither JSON nor XML."""
    if format_param is not None:
        # A `+` left unescaped in a query string arrives as a space.
        name = format_param.strip().replace(" ", "+").lower()
        found = FORMAT_NAMES.get(name.partition(";")[0].strip())
        return found if found is not None else _unacceptable("(_format)", format_param)
    if accept is None or not accept.strip():
        return "json"
    ranges = []
    for position, part in enumerate(accept.split(",")):
        media, _, params = part.partition(";")
        ranges.append((-_quality(params), position, media.strip().lower()))
    for negative_q, _, media in sorted(ranges):
        if negative_q < 0 and media in FORMAT_NAMES:
            return FORMAT_NAMES[media]
    return _unacceptable("(Accept)", accept)


def _quality(params: str) -> float:
    for param in params.split(";"):
        key, _, value = param.partition("=")
        if key.strip().lower() == "q":
            try:
                return max(0.0, min(1.0, float(value)))
            except ValueError:
                return 0.0
    return 1.0


def prefer_return(prefer: str | None) -> PreferReturn | None:
    """The `return` preference of a Prefer header (RFC 7240); None when absent or not one FHIR
    defines (an unknown preference is ignored, as RFC 7240 says)."""
    for preference in re.split(r"[,;]", prefer or ""):
        key, _, value = preference.partition("=")
        if key.strip().lower() == "return":
            wanted = value.strip().strip('"')
            for known in PREFER_RETURNS:
                if wanted.lower() == known.lower():
                    return known
    return None


def accepted_form(prefer: PreferReturn | None, answer_in: Format, *, create: bool) -> AcceptedForm:
    """What an accepted POST is answered with. Prefer applies to a create (one resource at
    /fhir/{resourceType}), as FHIR's http page says; XML, which the summary has no form in, gets
    the OperationOutcome."""
    if create and prefer == "minimal":
        return "minimal"
    if create and prefer == "representation":
        return "representation"
    if (create and prefer == "OperationOutcome") or answer_in == "xml":
        return "outcome"
    return "summary"


def public_base(
    configured: str | None,
    scheme: str,
    host: str | None,
    forwarded_proto: str | None = None,
    forwarded_host: str | None = None,
) -> str:
    """The address callers reach the gateway at (no trailing slash): the configured public URL,
    else the request's own, as a proxy's X-Forwarded-Proto and X-Forwarded-Host name it."""
    if configured:
        return configured.rstrip("/")
    proto = (forwarded_proto or "").split(",")[0].strip().lower()
    if proto not in ("http", "https"):
        proto = scheme if scheme in ("http", "https") else "http"
    for candidate in ((forwarded_host or "").split(",")[0].strip(), (host or "").strip()):
        if _HOST.match(candidate):
            return f"{proto}://{candidate}"
    return f"{proto}://127.0.0.1"


def public_url_setting(value: str | None) -> str | None:
    """CONCORD_GATEWAY_PUBLIC_URL, checked: an absolute http(s) URL without query or fragment."""
    if not value:
        return None
    if not re.match(r"^https?://[^/?#\s]+(/[^?#\s]*)?$", value):
        raise ValueError(
            f"CONCORD_GATEWAY_PUBLIC_URL {value!r} is not an absolute http(s) URL such as "
            "https://hub.example.org"
        )
    return value.rstrip("/")


def render(body: dict[str, Any], answer_in: Format) -> tuple[bytes, str]:
    """The bytes and media type of an answer: FHIR resources as FHIR JSON or XML (written by
    the fhir.resources R4B model of their type); anything else as plain JSON."""
    resource_type = body.get("resourceType")
    if not isinstance(resource_type, str):
        return orjson.dumps(body), "application/json"
    if answer_in == "json":
        return orjson.dumps(body), FHIR_JSON
    model = get_fhir_model_class(resource_type).model_validate(body)
    xml = model.model_dump_xml()
    return (xml if isinstance(xml, bytes) else xml.encode()), FHIR_XML
