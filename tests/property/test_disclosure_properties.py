"""Invariants of the disclosure policy: nothing the rule does not name leaves the hub, whatever the
resource holds and whatever the consent; and the order consents arrive in does not matter."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, get_args

from hypothesis import given, settings
from hypothesis import strategies as st

from services.domain.calendar import AgencyKind
from services.domain.consent import (
    CATEGORIES,
    ROLES,
    Category,
    ConsentDecision,
    Role,
    basis_for,
    record,
)
from services.domain.disclosure import FAIL_CLOSED, NEVER_DISCLOSED, POLICY, disclose

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
PROPERTY = settings(max_examples=200, deadline=None)
TYPES = sorted({resource_type for _, resource_type in POLICY} | {"Patient", "Consent"})
PARTNERS = ["probation-london", "gp-Y01234", "mht-rv5", "vol-recovery"]
NAMED = sorted(
    set().union(*(rule.allowed() for rule in POLICY.values())) | NEVER_DISCLOSED | {"meta"}
)

hours = st.integers(min_value=0, max_value=12).map(lambda n: T0 + timedelta(hours=n))
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=4,
)
# Each element the policy names is present or not; unknown elements are added around them.
resources = st.builds(
    lambda named, extra: {**extra, **named},
    st.fixed_dictionaries({}, optional=dict.fromkeys(NAMED, json_values)),
    st.dictionaries(st.text(min_size=1, max_size=12), json_values, max_size=5),
)


@st.composite
def decisions(draw: st.DrawFn) -> ConsentDecision:
    start = draw(st.none() | hours)
    end = draw(st.none() | hours)
    return ConsentDecision(
        consent_id=draw(st.sampled_from(["p/c1", "p/c2", "g/c3", "m/c4"])),
        source="p",
        permit=draw(st.booleans()),
        recipients=draw(st.frozensets(st.sampled_from(PARTNERS), max_size=2)),
        roles=draw(st.frozensets(st.sampled_from(ROLES), max_size=2)),
        categories=draw(st.frozensets(st.sampled_from(CATEGORIES), max_size=2)),
        start=start,
        end=end,
        recorded=draw(hours),
    )


consent_states = st.lists(decisions(), max_size=5).map(tuple)


@dataclass(frozen=True)
class Audience:
    """Who a resource is disclosed to, when, and where the resource came from."""

    resource_type: str
    role: Role
    kind: AgencyKind | None
    recipient: str
    at: datetime


def audiences(types: list[str]) -> st.SearchStrategy[Audience]:
    return st.builds(
        Audience,
        resource_type=st.sampled_from(types),
        role=st.sampled_from(ROLES),
        kind=st.none() | st.sampled_from(get_args(AgencyKind)),
        recipient=st.sampled_from(PARTNERS),
        at=hours,
    )


def disclosed(
    resource: dict[str, Any], audience: Audience, consents: tuple[ConsentDecision, ...]
) -> set[str]:
    disclosure = disclose(
        resource,
        resource_type=audience.resource_type,
        role=audience.role,
        own=False,
        agency_kind=audience.kind,
        consents=consents,
        recipient=audience.recipient,
        at=audience.at,
    )
    return set(disclosure.resource)


@PROPERTY
@given(resource=resources, audience=audiences(TYPES), consents=consent_states)
def test_nothing_outside_the_rule_leaves(
    resource: dict[str, Any], audience: Audience, consents: tuple[ConsentDecision, ...]
) -> None:
    allowed = POLICY.get((audience.role, audience.resource_type), FAIL_CLOSED).allowed()
    kept = disclosed(resource, audience, consents)
    assert kept <= allowed & resource.keys()
    if audience.resource_type == "Appointment":
        assert kept.isdisjoint(NEVER_DISCLOSED)


# A DetectedIssue carries the (already minimised) appointments in its own `contained`.
@PROPERTY
@given(resource=resources, audience=audiences([t for t in TYPES if t != "DetectedIssue"]))
def test_without_consent_no_free_text_element_leaves(
    resource: dict[str, Any], audience: Audience
) -> None:
    assert disclosed(resource, audience, ()).isdisjoint(NEVER_DISCLOSED)


queries = st.tuples(
    st.sampled_from(PARTNERS), st.sampled_from(ROLES), st.sampled_from(CATEGORIES), hours
)


@PROPERTY
@given(
    arrivals=st.lists(decisions(), max_size=6, unique_by=lambda d: (d.consent_id, d.recorded)),
    asked=st.lists(queries, min_size=1, max_size=20),
    data=st.data(),
)
def test_consents_recorded_in_any_order_give_the_same_answers(
    arrivals: list[ConsentDecision],
    asked: list[tuple[str, Role, Category, datetime]],
    data: st.DataObject,
) -> None:
    shuffled = data.draw(st.permutations(arrivals))
    in_order: tuple[ConsentDecision, ...] = ()
    other_order: tuple[ConsentDecision, ...] = ()
    for a, b in zip(arrivals, shuffled, strict=True):
        in_order = record(in_order, a)
        other_order = record(other_order, b)
    assert in_order == other_order
    # basis_for must not lean on the order record() keeps, either
    backwards = tuple(reversed(other_order))
    for recipient, role, category, at in asked:
        assert basis_for(
            in_order, recipient=recipient, role=role, category=category, at=at
        ) == basis_for(backwards, recipient=recipient, role=role, category=category, at=at)
