"""Nothing clinical leaves the hub in an alert: free text anywhere in a partner's Appointment
never reaches any recipient's DetectedIssue, and does not change it at all."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from schemas.fhir import problems_in
from services.domain.alerts import alert_messages
from services.domain.appointments import slot_from_appointment
from services.domain.calendar import AgencyKind, Calendar
from services.domain.partners import PartnerDirectory
from services.domain.reconciliation import reconcile
from services.domain.relationships import Relationship

T0 = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)
NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
DIRECTORY = PartnerDirectory.from_dict(
    {
        "partners": [
            {
                "id": "probation-london",
                "kind": "probation",
                "name": "London Probation Delivery Unit",
            },
            {"id": "gp-Y01234", "kind": "gp", "name": "High Street Surgery"},
            {"id": "mht-rv5", "kind": "mht", "name": "South London and Maudsley NHS FT"},
            {"id": "vol-recovery", "kind": "voluntary", "name": "Recovery Hub addiction service"},
        ]
    }
)
PARTNERS: dict[AgencyKind, str] = {
    "probation": "probation-london",
    "gp": "gp-Y01234",
    "mht": "mht-rv5",
    "voluntary": "vol-recovery",
}
# Every booker that can miss an appointment is related to the person, so is told of absences.
RELATED = {
    "probation-london": Relationship("probation", "case-record", "e-case"),
    "vol-recovery": Relationship("voluntary", "referral", "probation-london/ref-1"),
}
secret = st.text(min_size=6, max_size=40).filter(lambda s: s.strip() == s and s)


@dataclass(frozen=True)
class Booking:
    """One partner's appointment, as published: the fields the hub needs and free text around them."""

    kind: AgencyKind
    status: str
    start: datetime
    minutes: int
    secrets: tuple[str, ...]

    def resource(self, *, with_secrets: bool, status: str | None = None) -> dict[str, Any]:
        resource: dict[str, Any] = {
            "resourceType": "Appointment",
            "id": f"{self.kind}-1",
            "status": status or self.status,
            "start": self.start.isoformat(),
            "end": (self.start + timedelta(minutes=self.minutes)).isoformat(),
            "participant": [
                {
                    "actor": {
                        "identifier": {"system": "urn:concord:id:probation-crn", "value": "X123456"}
                    },
                    "status": "accepted",
                },
                {"actor": {"reference": "Location/main"}, "status": "accepted"},
            ],
        }
        if with_secrets:
            one, two, three, four, five, six, seven = (self.secrets * 7)[:7]
            resource |= {
                "description": one,
                "comment": two,
                "specialty": [{"text": three, "coding": [{"code": "x", "display": four}]}],
                "serviceType": [{"text": five, "coding": [{"display": five}]}],
                "reasonCode": [{"text": six}],
                "patientInstruction": seven,
            }
            resource["participant"][1]["actor"]["display"] = one
        return resource


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[Booking, Booking]:
    """Two overlapping appointments of different agencies that clash or explain an absence."""
    start = T0 + timedelta(minutes=5 * draw(st.integers(0, 24)))
    other_start = start + timedelta(minutes=5 * draw(st.integers(-6, 6)))
    secrets = tuple(draw(st.lists(secret, min_size=1, max_size=7)))
    if draw(st.booleans()):
        first_kind, second_kind = draw(st.permutations(list(PARTNERS)).map(lambda ks: ks[:2]))
        live = st.sampled_from(["booked", "arrived", "checked-in"])
        first = Booking(first_kind, draw(live), start, draw(st.sampled_from([15, 30, 60])), secrets)
        second = Booking(second_kind, draw(live), other_start, 45, secrets)
    else:
        health: AgencyKind = draw(st.sampled_from(["gp", "mht"]))
        attended = draw(st.sampled_from(["arrived", "checked-in", "fulfilled"]))
        first = Booking(health, attended, start, draw(st.sampled_from([15, 30, 60])), secrets)
        missed: AgencyKind = draw(st.sampled_from(["probation", "voluntary"]))
        second = Booking(missed, "noshow", other_start, 45, secrets)
    return first, second


def issues(
    first: Booking, second: Booking, *, with_secrets: bool
) -> list[tuple[str, dict[str, Any]]]:
    """(recipient, DetectedIssue) for every alert: raised, then resolved as the first is cancelled."""
    calendar, sent = Calendar("p-0a1b2c3d", relationships=RELATED), []
    changes = [
        (first, first.resource(with_secrets=with_secrets), 1),
        (second, second.resource(with_secrets=with_secrets), 1),
        (first, first.resource(with_secrets=with_secrets, status="cancelled"), 2),
    ]
    for booking, resource, version in changes:
        resource["meta"] = {"versionId": str(version)}
        source = PARTNERS[booking.kind]
        slot = slot_from_appointment(
            resource,
            source=source,
            kind=DIRECTORY.kind_of(source),
            event_id=f"{source}-{version}",
            occurred_at=NOW,
        )
        calendar, alerts = reconcile(calendar, slot)
        sent += [
            (m.recipient, m.resource) for a in alerts for m in alert_messages(a, DIRECTORY, NOW)
        ]
    return sent


def strings_in(node: Any) -> list[str]:
    if isinstance(node, dict):
        return [s for key, value in node.items() for s in [key, *strings_in(value)]]
    if isinstance(node, list):
        return [s for item in node for s in strings_in(item)]
    return [node] if isinstance(node, str) else []


@settings(max_examples=300, deadline=None)
@given(scenarios())
def test_free_text_in_an_appointment_never_reaches_an_alert(
    scenario: tuple[Booking, Booking],
) -> None:
    first, second = scenario
    plain = issues(first, second, with_secrets=False)
    sent = issues(first, second, with_secrets=True)
    # A secret that happens to be a word the alert uses anyway proves nothing either way.
    assume(
        not any(
            s in text for s in first.secrets for _, issue in plain for text in strings_in(issue)
        )
    )

    assert len(sent) >= 2, "a raised alert and its resolution"
    assert sent == plain, "the free text changed what a recipient was sent"
    for _recipient, issue in sent:
        assert problems_in(issue) == []
        texts = strings_in(issue)
        assert not any(s in text for s in first.secrets for text in texts)
