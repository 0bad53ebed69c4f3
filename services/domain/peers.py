"""Which hosts may speak for a partner on the MLLP listener: the partner directory's `mllp_peers`,
source networks and client certificate subjects. Pure: the listener asks `refusal` of every
connection before it reads a byte of it.

Without an allow-list only this machine (loopback) may connect as the partner: a listener
reachable from a network serves only the hosts its partner's entry names.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
# A certificate subject as `ssl.SSLSocket.getpeercert()` gives it, flattened: (attribute, value).
Subject = tuple[tuple[str, str], ...]
LOOPBACK: tuple[IpNetwork, ...] = (
    ipaddress.ip_network("127.0.0.0/8"),
    ipaddress.ip_network("::1/128"),
)
# The short names subjects are written with in the directory, as in RFC 4514.
ATTRIBUTES = {
    "CN": "commonName",
    "O": "organizationName",
    "OU": "organizationalUnitName",
    "C": "countryName",
    "L": "localityName",
    "ST": "stateOrProvinceName",
}


@dataclass(frozen=True, slots=True)
class PeerAllowList:
    """The networks a partner's engine connects from (any, when none is listed) and the client
    certificate subjects it presents (any verified one, when none is listed)."""

    networks: tuple[IpNetwork, ...] = LOOPBACK
    subjects: tuple[frozenset[tuple[str, str]], ...] = ()

    @property
    def needs_certificate(self) -> bool:
        """True when only a client certificate with a listed subject is let in."""
        return bool(self.subjects)


def _subject(where: str, text: Any) -> frozenset[tuple[str, str]]:
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"{where}: a certificate subject must be a string such as 'CN=engine.rv5'")
    pairs = []
    for part in text.split(","):
        name, equals, value = part.strip().partition("=")
        if not equals or name.strip().upper() not in ATTRIBUTES or not value.strip():
            known = ", ".join(ATTRIBUTES)
            raise ValueError(
                f"{where}: {part.strip()!r} in {text!r} is not NAME=value with NAME one of {known}"
            )
        pairs.append((ATTRIBUTES[name.strip().upper()], value.strip()))
    return frozenset(pairs)


def parse_peers(where: str, entry: Any) -> PeerAllowList:
    """A partner's `mllp_peers` entry (`networks`, `certificate_subjects`); ValueError says what
    is wrong with it."""
    if not isinstance(entry, Mapping) or not entry:
        raise ValueError(f"{where}: mllp_peers must map networks and/or certificate_subjects")
    unexpected = sorted(str(k) for k in entry if k not in ("networks", "certificate_subjects"))
    if unexpected:
        raise ValueError(f"{where}: mllp_peers has unexpected fields: {', '.join(unexpected)}")
    networks_given = entry.get("networks", [])
    subjects_given = entry.get("certificate_subjects", [])
    if not isinstance(networks_given, list) or not isinstance(subjects_given, list):
        raise ValueError(f"{where}: mllp_peers networks and certificate_subjects must be lists")
    networks = []
    for text in networks_given:
        try:
            networks.append(ipaddress.ip_network(str(text), strict=True))
        except ValueError as exc:
            raise ValueError(f"{where}: mllp_peers network {text!r}: {exc}") from None
    subjects = tuple(_subject(f"{where}: mllp_peers", text) for text in subjects_given)
    # Networks left out: any address, for a partner identified by its certificate alone.
    everywhere = (ipaddress.ip_network("0.0.0.0/0"), ipaddress.ip_network("::/0"))
    return PeerAllowList(tuple(networks) or everywhere, subjects)


def refusal(allowed: PeerAllowList | None, address: str, subject: Subject | None) -> str | None:
    """Why a connection from `address` with this verified certificate subject (None: no client
    certificate) may not speak for the partner; None when it may."""
    allowed = allowed or PeerAllowList()
    try:
        ip = ipaddress.ip_address(address.split("%", maxsplit=1)[0])
    except ValueError:
        return "the peer's address is not an IP address"
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if not any(ip in network for network in allowed.networks):
        return "the peer's address is not in the partner's mllp_peers networks"
    if not allowed.needs_certificate:
        return None
    if subject is None:
        return "the partner's mllp_peers needs a client certificate and the peer sent none"
    presented = frozenset(subject)
    if not any(wanted <= presented for wanted in allowed.subjects):
        return "the peer's certificate subject is not in the partner's mllp_peers"
    return None
