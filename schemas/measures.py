"""The commissioners' figures, declared once: one FHIR `Measure` per figure, published under
schemas/measures/ (`python -m schemas.measures` writes them; a test fails while they are stale).

Every figure is counted per calendar month and per area (a local authority, rolled up to its
ICB and to all areas); referral figures also by category and urgency, rejections by reason.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

HERE = Path(__file__).parent / "measures"
MEASURE_PREFIX: Final = "urn:concord:measure:"
FIGURE_SYSTEM: Final = "urn:concord:figure"
BREAKDOWN_SYSTEM: Final = "urn:concord:measure-breakdown"
REJECTION_REASON_SYSTEM: Final = "urn:concord:rejection-reason"
DATA_ABSENT_REASON: Final = "http://hl7.org/fhir/StructureDefinition/data-absent-reason"
POPULATION_SYSTEM: Final = "http://terminology.hl7.org/CodeSystem/measure-population"
DISCLOSURE_CONTROL: Final = (
    "Counts from 1 to 7 are shown as * (in FHIR: no count, data-absent-reason masked), other "
    "counts rounded to the nearest 5, and further cells suppressed so that no suppressed cell "
    "can be worked out from the cells and totals shown. Medians and percentiles are not shown "
    "over fewer than 8 people."
)

Scoring = Literal["count", "distribution"]
Breakdown = Literal["category", "urgency", "reason"]


@dataclass(frozen=True, slots=True)
class Figure:
    """One figure the commissioners see: what is counted, and how it is broken down."""

    code: str
    title: str
    counts: str  # what one unit of the count is, and when it is counted
    scoring: Scoring = "count"
    breakdowns: tuple[Breakdown, ...] = ("category", "urgency")

    @property
    def url(self) -> str:
        """The Measure's canonical URL, which each MeasureReport of the figure names."""
        return MEASURE_PREFIX + self.code


FIGURES: tuple[Figure, ...] = (
    Figure("referrals-made", "Referrals made", "a referral, in the month it was made"),
    Figure("referrals-routed", "Referrals routed", "a referral routed to a service, when routed"),
    Figure(
        "referrals-held",
        "Referrals held for consent",
        "a referral held because its content needs the person's consent, when held",
    ),
    Figure(
        "referrals-unrouted",
        "Referrals that could not be routed (unmet need)",
        "a referral no service in the directory takes for its category and area, or without a "
        "category or area, when refused: the gap a needs assessment asks for",
    ),
    Figure("referrals-accepted", "Referrals accepted", "a referral, when the service accepted it"),
    Figure(
        "referrals-rejected",
        "Referrals rejected",
        "a referral, when the service rejected it, by its coded reason",
        breakdowns=("category", "urgency", "reason"),
    ),
    Figure("referrals-completed", "Referrals completed", "a referral, when completed"),
    Figure("referrals-cancelled", "Referrals cancelled", "a referral, when cancelled"),
    Figure(
        "deadlines-missed",
        "Referral deadlines missed",
        "a referral not accepted by its working-day deadline, in the deadline's month",
    ),
    Figure(
        "days-to-acceptance",
        "Working days from referral to acceptance",
        "a referral accepted, with the working days (England's bank holidays excluded) from the "
        "day it was made; median and 90th percentile",
        scoring="distribution",
    ),
    Figure(
        "days-to-first-appointment",
        "Working days from referral to first appointment",
        "a referral's first appointment booked, with the working days from the day the referral "
        "was made to the appointment's day; median and 90th percentile",
        scoring="distribution",
    ),
    Figure(
        "assessments-completed",
        "Mental health assessments completed",
        "a completed referral of the mental-health-assessment category, when completed",
    ),
    Figure(
        "people-assessed",
        "People on probation with a mental health assessment",
        "a person with at least one mental health assessment completed in the month (each "
        "person once per area and month)",
        breakdowns=(),
    ),
    Figure(
        "clashes-detected",
        "Appointment clashes detected",
        "a clash between two agencies' appointments, when detected (area: the person's latest "
        "referral's)",
        breakdowns=(),
    ),
    Figure(
        "clashes-resolved-before",
        "Clashes resolved before the appointment",
        "a clash resolved by a change made before the changed appointment's start",
        breakdowns=(),
    ),
    Figure(
        "absences-explained",
        "Absences explained by a health appointment (breaches avoided)",
        "a missed probation or treatment appointment explained by attendance at a health "
        "appointment, when explained",
        breakdowns=(),
    ),
    Figure(
        "identity-conflicts",
        "Identity conflicts",
        "an identity conflict raised between partners' records, when raised (no area: "
        "counted under unknown)",
        breakdowns=(),
    ),
)
BY_CODE: Final = {figure.code: figure for figure in FIGURES}


def measure(figure: Figure) -> dict[str, Any]:
    """The FHIR R4 Measure that defines a figure."""
    groups: list[dict[str, Any]] = []
    scores = ("median", "p90") if figure.scoring == "distribution" else ("count",)
    for score in scores:
        groups.append(
            {
                "code": {"coding": [{"system": FIGURE_SYSTEM, "code": f"{figure.code}#{score}"}]},
                "description": {
                    "count": figure.counts,
                    "median": f"median of: {figure.counts}",
                    "p90": f"90th percentile of: {figure.counts}",
                }[score],
                "population": [
                    {
                        "code": {
                            "coding": [{"system": POPULATION_SYSTEM, "code": "initial-population"}]
                        },
                        "description": figure.counts,
                        "criteria": {"language": "text/plain", "expression": figure.counts},
                    }
                ],
                "stratifier": [
                    {
                        "code": {"coding": [{"system": BREAKDOWN_SYSTEM, "code": breakdown}]},
                        "criteria": {"language": "text/plain", "expression": breakdown},
                    }
                    for breakdown in figure.breakdowns
                ],
            }
        )
    return {
        "resourceType": "Measure",
        "id": figure.code,
        "url": figure.url,
        "name": "".join(part.capitalize() for part in figure.code.split("-")),
        "title": figure.title,
        "status": "active",
        "description": f"Counts {figure.counts}; per calendar month and area.",
        "disclaimer": DISCLOSURE_CONTROL,
        "scoring": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/measure-scoring",
                    "code": "continuous-variable" if figure.scoring == "distribution" else "cohort",
                }
            ]
        },
        "group": groups,
    }


def main() -> int:
    """Write one Measure per figure under schemas/measures/."""
    HERE.mkdir(exist_ok=True)
    for figure in FIGURES:
        path = HERE / f"{figure.code}.json"
        path.write_text(json.dumps(measure(figure), indent=2) + "\n", encoding="utf-8")
        print(f"wrote schemas/measures/{path.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
