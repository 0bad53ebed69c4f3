"""The partner directory: which organisation each partner id names and what kind of agency it is.

Loaded from the file CONCORD_PARTNERS names (the demo's is deploy/demo/partners.yaml) and
checked whole, so a typo stops the worker at start-up rather than misrouting an alert later.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from types import MappingProxyType
from typing import Any, get_args

from schemas.identifiers import PARTNER_ID
from services.domain.credentials import is_secret_hash
from services.domain.kinds import AgencyKind
from services.domain.peers import PeerAllowList, parse_peers

KINDS: tuple[AgencyKind, ...] = get_args(AgencyKind)

ORGANISATION_TYPE_LABELS: Mapping[AgencyKind, str] = MappingProxyType(
    {
        "probation": "Probation service",
        "gp": "GP practice",
        "mht": "Mental health trust",
        "voluntary": "Voluntary-sector service",
        "commissioner": "Health commissioner",
    }
)

# The id convention, for partners that publish before the directory lists them.
_PREFIX_KINDS: tuple[tuple[str, AgencyKind], ...] = (
    ("probation-", "probation"),
    ("gp-", "gp"),
    ("mht-", "mht"),
    ("vol-", "voluntary"),
    ("commissioner-", "commissioner"),
)
_FIELDS = ("id", "kind", "name")
_OPTIONAL = ("secret_hash", "next_secret_hash", "csv_columns", "silent_after", "mllp_peers")
_DURATION = re.compile(r"^\s*(\d+)\s*([smhd])\s*$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


class UnknownPartner(KeyError):  # noqa: N818 -- name fixed by the shared API
    """A partner id neither the directory nor the id convention can place."""


@dataclass(frozen=True, slots=True)
class Partner:
    """One organisation that exchanges events through the hub."""

    id: str
    kind: AgencyKind
    name: str
    secret_hash: str | None = None  # services.domain.credentials format; None cannot sign in
    # A second live secret, so a partner can move to a new one without downtime: add it here,
    # let the partner switch, then make it `secret_hash` and drop the old one.
    next_secret_hash: str | None = None
    # The partner's CSV export headers that the usual names do not cover: their header → our
    # column (connectors/feeds/README.md). Checked against the columns where a CSV is read.
    csv_columns: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    # How long the partner's feed may be quiet before the operators are told (None: never).
    silent_after: timedelta | None = None
    # The hosts that may connect to the MLLP listener as this partner (services/domain/peers.py);
    # None: this machine only.
    mllp_peers: PeerAllowList | None = None


def duration(text: str) -> timedelta:
    """A duration written as a whole number and a unit, s, m, h or d (`6h`, `2d`); ValueError
    otherwise."""
    match = _DURATION.match(text)
    if match is None or int(match.group(1)) == 0:
        raise ValueError(f"{text!r} is not a duration such as 90m, 6h or 2d")
    return timedelta(seconds=int(match.group(1)) * _UNIT_SECONDS[match.group(2)])


def _silent_after(where: str, value: Any) -> timedelta | None:
    if value is None:
        return None
    try:
        return duration(str(value))
    except ValueError as exc:
        raise ValueError(f"{where}: silent_after {exc}") from None


def _partner(position: int, entry: Any) -> Partner:
    where = f"partner entry {position}"
    if not isinstance(entry, Mapping):
        raise ValueError(f"{where} must be a mapping with id, kind and name")
    if isinstance(entry.get("id"), str):
        where += f" ({entry['id']!r})"
    for name in _FIELDS:
        if name not in entry:
            raise ValueError(f"{where} is missing the field {name!r}")
        if not isinstance(entry[name], str) or not entry[name].strip():
            raise ValueError(f"{where}: {name} must be a non-empty string")
    unexpected = sorted(str(key) for key in entry if key not in (*_FIELDS, *_OPTIONAL))
    if unexpected:
        raise ValueError(f"{where} has unexpected fields: {', '.join(unexpected)}")
    if not PARTNER_ID.match(entry["id"]):
        raise ValueError(
            f"{where}: id is not a valid partner id (lower-case letters, digits and hyphens, "
            "or a kind prefix and an ODS code such as gp-Y01234)"
        )
    kind = next((k for k in KINDS if k == entry["kind"]), None)
    if kind is None:
        raise ValueError(f"{where}: kind {entry['kind']!r} is not one of {', '.join(KINDS)}")
    for field_name in ("secret_hash", "next_secret_hash"):
        stored = entry.get(field_name)
        if stored is not None and not is_secret_hash(stored):
            raise ValueError(
                f"{where}: {field_name} is not a hash made by `concord partners hash-secret`"
            )
    secret_hash, next_secret_hash = entry.get("secret_hash"), entry.get("next_secret_hash")
    if next_secret_hash is not None and secret_hash is None:
        raise ValueError(f"{where}: next_secret_hash needs a secret_hash beside it")
    return Partner(
        id=entry["id"],
        kind=kind,
        name=entry["name"].strip(),
        secret_hash=secret_hash,
        next_secret_hash=next_secret_hash,
        csv_columns=_csv_columns(where, entry.get("csv_columns", {})),
        silent_after=_silent_after(where, entry.get("silent_after")),
        mllp_peers=parse_peers(where, entry["mllp_peers"]) if "mllp_peers" in entry else None,
    )


def _csv_columns(where: str, mapping: Any) -> Mapping[str, str]:
    """A partner's csv_columns: a mapping of non-empty header names to non-empty column names."""
    if not isinstance(mapping, Mapping) or not all(
        isinstance(key, str) and key.strip() and isinstance(value, str) and value.strip()
        for key, value in mapping.items()
    ):
        raise ValueError(
            f"{where}: csv_columns must map the partner's CSV header names to column names"
        )
    return MappingProxyType({key.strip(): value.strip() for key, value in mapping.items()})


@dataclass(frozen=True, slots=True)
class PartnerDirectory:
    """Every partner the hub knows, by partner id; `partners` is never mutated after construction."""

    partners: Mapping[str, Partner] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PartnerDirectory:
        """Build the directory from `{"partners": [{id, kind, name}, ...]}`; ValueError says what is wrong."""
        entries = data.get("partners") if isinstance(data, Mapping) else None
        if not isinstance(entries, list):
            raise ValueError("the partner directory must be a mapping with a 'partners' list")
        partners: dict[str, Partner] = {}
        for position, entry in enumerate(entries, start=1):
            partner = _partner(position, entry)
            if partner.id in partners:
                raise ValueError(f"partner entry {position}: id {partner.id!r} is listed twice")
            partners[partner.id] = partner
        return cls(partners)

    def kind_of(self, partner_id: str) -> AgencyKind:
        """The partner's kind from the directory, else from its id prefix; UnknownPartner if neither."""
        partner = self.partners.get(partner_id)
        if partner is not None:
            return partner.kind
        for prefix, kind in _PREFIX_KINDS:
            if partner_id.startswith(prefix):
                return kind
        raise UnknownPartner(partner_id)

    def get(self, partner_id: str) -> Partner | None:
        """The listed partner, or None."""
        return self.partners.get(partner_id)

    def __contains__(self, partner_id: object) -> bool:
        return partner_id in self.partners
