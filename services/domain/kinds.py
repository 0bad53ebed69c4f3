"""The kinds of agency that exchange events through the hub, and the groups the rules use."""

from __future__ import annotations

from typing import Literal

AgencyKind = Literal["probation", "gp", "mht", "voluntary", "commissioner"]

# Attendance at these can explain an absence elsewhere.
HEALTH_KINDS: frozenset[str] = frozenset({"gp", "mht"})
# Probation and treatment appointments: the ones whose no-show can lead to a breach.
OBLIGATION_KINDS: frozenset[str] = frozenset({"probation", "voluntary"})
# Commissioners see aggregate figures only: no event about a person, no person-level endpoint.
AGGREGATE_ONLY_KINDS: frozenset[str] = frozenset({"commissioner"})
