"""Mutations of real inputs: byte flips, truncation, and deleted, duplicated or replaced fields,
elements, segments and columns. Pure and seeded, so a failing input can be made again.
"""

from __future__ import annotations

import csv
import io
import random
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import orjson
from lxml import etree

# Values that break parsers and mappers that assume too much: empty, huge, wrong type,
# separators of every format, non-ASCII digits, control characters.
ODD_TEXT = [
    "",
    " ",
    "\x00",
    "\r",
    "\n",
    "\r\n",
    "|",
    "^",
    "~",
    "\\",
    "&",
    ",",
    '"',
    "'",
    "<",
    ">",
    "]]>",
    "{",
    "}",
    "[",
    "]",
    "\\E\\",
    "\\X0D\\",
    "\\Xzz\\",
    "null",
    "true",
    "-1",
    "0",
    "1e999",
    "9" * 40,
    "NaN",
    "٩٤٣٤٧٦٥٩١٩",
    "943476591²",
    "é",
    "\ud7ff",
    "\U0001f600",
    "2026-02-30T10:00:00Z",
    "9999-12-31T23:59:59Z",
    "0001-01-01",
    "99991231235959-1400",
    "2026-03-29T01:30:00",
    "99999999999999",
    "x" * 300,
    "urn:concord:id:person",
    "urn:concord:id:local:",
    "urn:concord:id:local:other-partner",
    "Patient/1",
    "urn:uuid:1",
]
ODD_JSON: list[Any] = [
    None,
    True,
    False,
    0,
    -1,
    2**63 - 1,
    1.5,
    1e308,
    "",
    "x",
    [],
    {},
    [None],
    {"": None},
    [[[[[]]]]],
    *ODD_TEXT,
]


def pick(rng: random.Random, items: Sequence[Any]) -> Any:
    """One item of a non-empty sequence."""
    return items[rng.randrange(len(items))]


# --- bytes -----------------------------------------------------------------------------------


def flip_bit(data: bytes, rng: random.Random) -> bytes:
    if not data:
        return data
    i = rng.randrange(len(data))
    return data[:i] + bytes([data[i] ^ (1 << rng.randrange(8))]) + data[i + 1 :]


def set_byte(data: bytes, rng: random.Random) -> bytes:
    if not data:
        return bytes([rng.randrange(256)])
    i = rng.randrange(len(data))
    return data[:i] + bytes([rng.randrange(256)]) + data[i + 1 :]


def truncate(data: bytes, rng: random.Random) -> bytes:
    return data[: rng.randrange(len(data) + 1)]


def delete_range(data: bytes, rng: random.Random) -> bytes:
    if not data:
        return data
    start = rng.randrange(len(data))
    return data[:start] + data[start + rng.randrange(1, 64) :]


def duplicate_range(data: bytes, rng: random.Random) -> bytes:
    if not data:
        return data
    start = rng.randrange(len(data))
    chunk = data[start : start + rng.randrange(1, 256)]
    return data[:start] + chunk + data[start:]


def insert_text(data: bytes, rng: random.Random) -> bytes:
    i = rng.randrange(len(data) + 1)
    return data[:i] + str(pick(rng, ODD_TEXT)).encode("utf-8", "surrogatepass") + data[i:]


BYTE_MUTATIONS: list[Callable[[bytes, random.Random], bytes]] = [
    flip_bit,
    set_byte,
    truncate,
    delete_range,
    duplicate_range,
    insert_text,
]


# --- JSON --------------------------------------------------------------------------------------


def _containers(value: Any) -> list[Any]:
    """Every dict and list inside a JSON value, the value itself first."""
    found, stack = [], [value]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            found.append(node)
            stack.extend(node.values())
        elif isinstance(node, list):
            found.append(node)
            stack.extend(node)
    return found


def mutate_json_value(value: Any, rng: random.Random) -> Any:
    """The value with one field or element deleted, duplicated, renamed or replaced."""
    containers = [c for c in _containers(value) if c]
    if not containers:
        return pick(rng, ODD_JSON)
    node = pick(rng, containers)
    action = rng.randrange(5)
    if isinstance(node, dict):
        key = pick(rng, list(node))
        if action == 0:
            del node[key]
        elif action == 1:  # a field given again under another name, or the same value twice
            node[key + pick(rng, ["", "_", "2", "[x]"])] = orjson.loads(orjson.dumps(node[key]))
        elif action == 2:
            node[pick(rng, [*node, "resourceType", "id", "system", "value", "status"])] = node.pop(
                key
            )
        elif action == 3:
            node[key] = pick(rng, ODD_JSON)
        else:
            node[key] = [node[key]] if not isinstance(node[key], list) else node[key][:1] * 2
    else:
        i = rng.randrange(len(node))
        if action == 0:
            del node[i]
        elif action == 1:
            node.insert(i, orjson.loads(orjson.dumps(node[i])))
        elif action in (2, 3):
            node[i] = pick(rng, ODD_JSON)
        else:
            node.reverse()
    return value


def mutate_json(data: bytes, rng: random.Random) -> bytes:
    """A structural JSON mutation when the input is JSON (per line for NDJSON), else a byte one."""
    lines = data.split(b"\n")
    at = rng.randrange(len(lines))
    try:
        value = orjson.loads(lines[at])
    except orjson.JSONDecodeError:
        return mutate_bytes(data, rng)
    lines[at] = orjson.dumps(mutate_json_value(value, rng))
    return b"\n".join(lines)


# --- XML ---------------------------------------------------------------------------------------


def mutate_xml(data: bytes, rng: random.Random) -> bytes:
    """The document with one element deleted, duplicated, moved, renamed or its value replaced."""
    try:
        root = etree.fromstring(data, etree.XMLParser(resolve_entities=False, no_network=True))
    except etree.XMLSyntaxError:
        return mutate_bytes(data, rng)
    elements = [e for e in root.iter() if isinstance(e.tag, str)]
    element = pick(rng, elements)
    parent = element.getparent()
    action = rng.randrange(7)
    if parent is not None and action == 0:
        parent.remove(element)
    elif parent is not None and action == 1:
        parent.insert(parent.index(element), _copy(element))
    elif parent is not None and action == 2:
        pick(rng, elements).append(_copy(element))
    elif action == 3:
        names = sorted({etree.QName(e).localname for e in elements})
        name = pick(rng, [*names, "class", "event", "div", "Bundle", "contained", "x"])
        element.tag = f"{{{etree.QName(element).namespace or ''}}}{name}".replace("{}", "")
    elif action == 4:
        element.set("value", str(pick(rng, ODD_TEXT)).replace("\x00", "").replace("\ud7ff", ""))
    elif action == 5:
        element.append(pick(rng, [etree.Comment("c"), etree.PI("pi", "x"), etree.Element("x")]))
    else:
        element.attrib.pop("value", None)
    return bytes(etree.tostring(root))


def _copy(element: Any) -> Any:
    from copy import deepcopy

    return deepcopy(element)


# --- HL7 v2 ------------------------------------------------------------------------------------


# Values HL7 senders put where the mapping reads times, durations and identifiers.
HL7_ODD_VALUES = (
    b'""',
    b'""^""',
    b"20110613122406637",
    b"20201004140000.000+0100",
    b"2^^2 hours^202010011126+0215^202010091126+0215^R",
    b"^^M60^20261204130000",
    b"^^soon^20261204130000",
    b"45^fortnights",
    b"1e9^min",
    b"9434765918^^^NHS^NH",
    b"42^^^RV5~43^^^RV5^PI",
    b"04~01",
    b"FHS|^~\\&",
)


def mutate_hl7(data: bytes, rng: random.Random) -> bytes:
    """One segment deleted, duplicated or swapped, or one field deleted, duplicated or replaced
    (with odd text or a value HL7 senders use)."""
    segments = data.replace(b"\n", b"\r").split(b"\r")
    i = rng.randrange(len(segments))
    action = rng.randrange(7)
    if action == 0:
        del segments[i]
    elif action == 1:
        segments.insert(i, segments[i])
    elif action == 2:
        j = rng.randrange(len(segments))
        segments[i], segments[j] = segments[j], segments[i]
    else:
        fields = segments[i].split(b"|")
        f = rng.randrange(len(fields))
        if action == 3:
            del fields[f]
        elif action == 4:
            fields.insert(f, fields[f])
        elif action == 5:
            fields[f] = str(pick(rng, ODD_TEXT)).encode("utf-8", "surrogatepass")
        else:
            fields[f] = pick(rng, HL7_ODD_VALUES)
        segments[i] = b"|".join(fields)
    return b"\r".join(segments)


# --- CSV ---------------------------------------------------------------------------------------


def mutate_csv(data: bytes, rng: random.Random) -> bytes:
    """One column or row deleted or duplicated, or one cell deleted or replaced."""
    try:
        rows = list(csv.reader(io.StringIO(data.decode("utf-8"), newline="")))
    except (UnicodeDecodeError, csv.Error):
        return mutate_bytes(data, rng)
    if not rows or not rows[0]:
        return mutate_bytes(data, rng)
    column, r = rng.randrange(len(rows[0])), rng.randrange(len(rows))
    action = rng.randrange(6)
    if action == 0:
        rows = [row[:column] + row[column + 1 :] for row in rows]
    elif action == 1:
        rows = [row[: column + 1] + row[column : column + 1] + row[column + 1 :] for row in rows]
    elif action == 2:
        del rows[r]
    elif action == 3:
        rows.insert(r, list(rows[r]))
    elif action == 4 and rows[r]:
        del rows[r][rng.randrange(len(rows[r]))]
    elif rows[r]:
        rows[r][rng.randrange(len(rows[r]))] = str(pick(rng, ODD_TEXT))
    out = io.StringIO(newline="")
    csv.writer(out).writerows(rows)
    return out.getvalue().encode("utf-8", "surrogatepass")


def mutate_bytes(data: bytes, rng: random.Random) -> bytes:
    """One byte-level mutation, for inputs with no structure to keep (a key, a person id)."""
    mutation: Callable[[bytes, random.Random], bytes] = pick(rng, BYTE_MUTATIONS)
    return mutation(data, rng)


STRUCTURAL: dict[str, Callable[[bytes, random.Random], bytes]] = {
    "bytes": mutate_bytes,
    "json": mutate_json,
    "xml": mutate_xml,
    "hl7": mutate_hl7,
    "csv": mutate_csv,
}


def mutants(seeds: Sequence[bytes], kind: str, rng: random.Random, count: int) -> Iterator[bytes]:
    """`count` inputs, each a seed with one to three mutations (structural or byte-level) applied."""
    structural = STRUCTURAL[kind]
    for _ in range(count):
        data = pick(rng, seeds)
        for _step in range(rng.randint(1, 3)):
            mutation = structural if rng.random() < 0.6 else mutate_bytes
            data = mutation(data, rng)
        yield data
