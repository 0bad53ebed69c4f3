"""Caps on the shape of an HL7 v2 message, checked with plain string counts before it is parsed.

hl7apy takes about 2 ms per field, component or repetition of a segment the hub reads, so a
550 kB message of repetitions would take minutes of CPU; real messages have a few hundred
(the public samples at most 28 segments, 23 repetitions of a field and 634 elements). A message
over a cap is refused whole (AR) without being parsed. Pure: unit-tested without sockets.
"""

from __future__ import annotations

from dataclasses import dataclass

from connectors.hl7v2.message import READ_SEGMENTS, split_segments


@dataclass(frozen=True, slots=True)
class MessageCaps:
    """The most of each a message may have (settings CONCORD_MLLP_MAX_*)."""

    segments: int = 500
    repetitions: int = 100  # of one field
    elements: int = 2000  # fields, components, repetitions and subcomponents of the segments read


def over_caps(text: str, caps: MessageCaps) -> str | None:
    """Why the message is over a cap (naming the cap and the segment), or None."""
    lines = split_segments(text)
    if len(lines) > caps.segments:
        return f"{len(lines)} segments is over the limit of {caps.segments}"
    first = lines[0] if lines else ""
    if not first.startswith("MSH") or len(first) < 8:
        return None  # not HL7 at all: the parser says so, cheaply
    field, component, repetition, subcomponent = first[3], first[4], first[5], first[7]
    elements = 0
    for number, line in enumerate(lines, start=1):
        if line[:3] not in READ_SEGMENTS:
            continue  # never parsed: only its share of the size limit matters
        for value in line.split(field):
            if value.count(repetition) + 1 > caps.repetitions:
                return (
                    f"a field of segment {number} ({line[:3]}) repeats more than "
                    f"{caps.repetitions} times"
                )
        elements += sum(line.count(c) for c in (field, component, repetition, subcomponent))
        if elements > caps.elements:
            return f"more than {caps.elements} fields and components in the segments the hub reads"
    return None
