"""POST /upload/csv: a voluntary-sector service's spreadsheet export sent over HTTP, so that a
small charity needs a browser form or curl, not Python.

The file goes through the reader and publish path of `concord publish --format csv`
(connectors.feeds.csv_feed, connectors.publish.publish_records): good rows to the inbound
topic, refused rows to the dead-letter topic. The answer reports each row. See
connectors/gateway/README.md.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.parser import BytesParser
from email.policy import HTTP
from typing import Any

from aiohttp import web
from kafka.errors import MessageSizeTooLargeError

from connectors.feeds.csv_feed import records_from_csv_bytes
from connectors.gateway.app import (
    DEAD_LETTER_PREFIX,
    FACTS,
    GATEWAY,
    RETRY_AFTER_S,
    Gateway,
    KafkaUnavailable,
    Reply,
    read_limited,
    refused_reply,
    respond,
    too_large,
)
from connectors.gateway.rules import Answer, RefusedRequest, refuse
from connectors.kafka_io import Publisher
from connectors.publish import Encoded, Ignored, PublishResult, Rejected, publish_records

ORIGIN = "POST /upload/csv"
FILE_FIELD = "file"
DEFAULT_NAME = "upload.csv"
# What browsers and spreadsheet tools label a .csv file with (Windows says vnd.ms-excel).
CSV_TYPES = ("text/csv", "application/csv", "application/vnd.ms-excel", "text/plain")
_NAME_CHARACTERS = re.compile(r"[^A-Za-z0-9._ -]+")


@dataclass(slots=True)
class RowReport:
    """What became of one row of the file (a line, as a spreadsheet numbers its rows)."""

    row: int
    event_ids: list[str] = field(default_factory=list)
    problems: list[dict[str, str]] = field(default_factory=list)

    def body(self) -> dict[str, Any]:
        """The row as the answer gives it."""
        if self.problems:
            return {"row": self.row, "accepted": False, "problems": self.problems}
        return {"row": self.row, "accepted": True, "event_ids": self.event_ids}


@dataclass(slots=True)
class UploadReport:
    """Every row's outcome, in file order, and the warnings about the file as a whole."""

    file: str
    rows: dict[int, RowReport] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def add(self, outcome: PublishResult) -> None:
        """Take one record's outcome as publish_records decided and sent it."""
        if isinstance(outcome, Ignored):
            self.warnings.append(outcome.warning())
            return
        number = row_number(outcome.origin)
        row = self.rows.setdefault(number, RowReport(number))
        if isinstance(outcome, Encoded):
            row.event_ids.append(outcome.event_id)
        elif isinstance(outcome, Rejected):
            row.problems += [{"column": p.path, "reason": p.message} for p in outcome.problems]

    @property
    def refused(self) -> int:
        """Rows refused (and dead-lettered)."""
        return sum(1 for row in self.rows.values() if row.problems)

    @property
    def accepted(self) -> int:
        """Rows published."""
        return len(self.rows) - self.refused

    def answer(self) -> Answer:
        """200 with the report; 422 with it when rows were refused and none accepted."""
        status = 422 if self.refused and not self.accepted else 200
        return Answer(
            status,
            {
                "file": self.file,
                "accepted_rows": self.accepted,
                "refused_rows": self.refused,
                "warnings": self.warnings,
                "rows": [self.rows[number].body() for number in sorted(self.rows)],
            },
        )


def row_number(origin: str) -> int:
    """The line a record came from: "upload.csv:7" → 7."""
    return int(origin.rpartition(":")[2])


def file_name(given: str | None) -> str:
    """A file name fit to name rows in errors and dead letters: its last path part, in
    plain characters; the default when nothing is left."""
    base = re.split(r"[/\\]", given or "")[-1]
    cleaned = _NAME_CHARACTERS.sub("_", base).strip(" .")[:100]
    return cleaned or DEFAULT_NAME


def csv_from_form(body: bytes, content_type: str) -> tuple[str, bytes] | RefusedRequest:
    """The `file` field of a multipart/form-data body: its file name and bytes."""
    # The standard library's MIME parser reads form data (the replacement the cgi module's
    # retirement, PEP 594, points to); a header line is added so it sees the boundary.
    head = f"Content-Type: {content_type}\r\n\r\n".encode("latin-1", errors="replace")
    message = BytesParser(policy=HTTP).parsebytes(head + body)
    if not isinstance(message, EmailMessage) or not message.is_multipart():
        return refuse(400, "structure", "(body)", "not readable as multipart/form-data")
    for part in message.iter_parts():
        if part.get_param("name", header="content-disposition") == FILE_FIELD:
            data = part.get_payload(decode=True)
            return file_name(part.get_filename()), data if isinstance(data, bytes) else b""
    return refuse(
        400,
        "invalid",
        f"({FILE_FIELD})",
        f"no form field named {FILE_FIELD!r} holding the CSV file",
    )


def csv_from_body(
    body: bytes, content_type: str | None, media_type: str, query: Mapping[str, str]
) -> tuple[str, bytes] | RefusedRequest:
    """The file a request carries: a form's `file` field, or the body itself as CSV."""
    if media_type == "multipart/form-data":
        return csv_from_form(body, content_type or "")
    if media_type in CSV_TYPES:
        return file_name(query.get("filename")), body
    return refuse(
        415,
        "not-supported",
        "(Content-Type)",
        f"{media_type or 'no Content-Type'} is not taken: send multipart/form-data with the file "
        f"in the field {FILE_FIELD!r}, or the file itself as text/csv",
    )


async def upload_csv(request: web.Request) -> web.Response:
    """POST /upload/csv: sign in, read the file within the size limit, publish, report each row."""
    gateway, facts = request.app[GATEWAY], request[FACTS]
    partner = await gateway.sign_in(request)
    if isinstance(partner, RefusedRequest):
        return respond(request, refused_reply(partner))
    facts["partner"] = partner.id
    limit, declared = gateway.config.max_body, request.content_length
    # Never read what was declared too large: keep a prefix for the operator.
    reading = DEAD_LETTER_PREFIX if declared is not None and declared > limit else limit
    body, over = await read_limited(request, reading)
    if over or (declared is not None and declared > limit):
        refusal, kept = too_large(declared, limit), body[:DEAD_LETTER_PREFIX]
        return respond(request, await _refused(gateway, facts, refusal, kept, partner.id))
    found = csv_from_body(
        body, request.headers.get("Content-Type"), request.content_type, request.query
    )
    if isinstance(found, RefusedRequest):
        return respond(request, await _refused(gateway, facts, found, body, partner.id))
    name, data = found
    report = UploadReport(name)

    def job(publisher: Publisher) -> None:
        records = records_from_csv_bytes(data, name, partner.id, partner.csv_columns)
        # workers=1: a request is answered from this thread, not a pool of processes.
        publish_records(records, partner.id, publisher, workers=1, on_outcome=report.add)

    try:
        await gateway.lanes.run(job)
    except KafkaUnavailable:
        message = "the hub could not store your file just now: send the whole file again later"
        return respond(
            request,
            refused_reply(refuse(503, "transient", "(Kafka)", message), retry_after=RETRY_AFTER_S),
        )
    except MessageSizeTooLargeError:
        too_big = refuse(413, "too-long", "(body)", "a row is over the broker's message limit")
        return respond(request, refused_reply(too_big))
    response = respond(request, Reply(report.answer()))
    facts["events"] = sum(len(row.event_ids) for row in report.rows.values())
    facts["problems"] = report.refused  # after respond, which counts issues of an outcome
    facts["ignored"] = len(report.warnings)
    facts["kept"] = report.refused > 0  # publish_records dead-lettered every refused row
    return response


async def _refused(
    gateway: Gateway, facts: dict[str, Any], refusal: RefusedRequest, body: bytes, partner: str
) -> Reply:
    """Dead-letter a refused upload, then answer with the refusal."""
    facts["kept"] = await gateway.keep(refusal, body, ORIGIN, partner)
    return refused_reply(refusal)


def openapi_operation() -> dict[str, Any]:
    """POST /upload/csv as the OpenAPI document describes it (connectors/gateway/spec.py)."""
    outcome = {
        "application/fhir+json": {"schema": {"$ref": "#/components/schemas/OperationOutcome"}}
    }
    problem = {
        "type": "object",
        "required": ["column", "reason"],
        "properties": {
            "column": {
                "type": "string",
                "description": "the column as the file names it, or (row), (header), (file)",
            },
            "reason": {"type": "string", "example": "'31/02/2026' is not a date (day first: …)"},
        },
    }
    report = {
        "type": "object",
        "required": ["file", "accepted_rows", "refused_rows", "warnings", "rows"],
        "properties": {
            "file": {"type": "string", "description": "the file name rows are named by"},
            "accepted_rows": {"type": "integer"},
            "refused_rows": {"type": "integer"},
            "warnings": {
                "type": "array",
                "items": {"type": "string"},
                "description": "columns not read, once per file",
            },
            "rows": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["row", "accepted"],
                    "properties": {
                        "row": {
                            "type": "integer",
                            "description": "the line of the file (the header is 1)",
                        },
                        "accepted": {"type": "boolean"},
                        "event_ids": {
                            "type": "array",
                            "items": {"type": "string", "format": "uuid"},
                        },
                        "problems": {"type": "array", "items": problem},
                    },
                },
            },
        },
    }

    def answer(description: str) -> dict[str, Any]:
        return {"description": description, "content": {"application/json": {"schema": report}}}

    def refused(description: str) -> dict[str, Any]:
        return {"description": description, "content": outcome}

    return {
        "operationId": "uploadCsv",
        "summary": "Publish a voluntary-sector CSV export of appointments and attendance",
        "description": "Read and published as `concord publish --format csv` does (connectors/feeds/README.md): "
        "spreadsheet header names or the partner's own csv_columns, attendance words, day-first UK dates, "
        "London times, UTF-8 or Windows-1252. Good rows are published, refused rows dead-lettered, and "
        "every row reported.",
        "security": [{"partnerBasic": []}],
        "parameters": [
            {
                "name": "filename",
                "in": "query",
                "required": False,
                "description": "names the rows of a text/csv body (default upload.csv)",
                "schema": {"type": "string"},
            }
        ],
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "required": [FILE_FIELD],
                        "properties": {FILE_FIELD: {"type": "string", "format": "binary"}},
                    }
                },
                **{media: {"schema": {"type": "string"}} for media in CSV_TYPES},
            },
        },
        "responses": {
            "200": answer(
                "the file was read: every row published (acknowledged by Kafka) or refused (dead-lettered)"
            ),
            "400": refused(
                "a form that cannot be read, or without a file field; kept on the dead-letter topic"
            ),
            "401": refused("no credential, or a wrong one (not dead-lettered)"),
            "413": refused(
                "over the size limit (default 1 MiB); the first 64 KiB kept on the dead-letter topic"
            ),
            "415": refused("another Content-Type; kept on the dead-letter topic"),
            "422": answer(
                "rows were refused and none published, e.g. a header that cannot be read"
            ),
            "503": refused(
                "Kafka did not acknowledge in time; send the whole file again after Retry-After seconds"
            ),
        },
    }
