"""The referral vocabulary shared by partner connectors and the routing rules: categories and code systems."""

from __future__ import annotations

from collections.abc import Mapping

# The categories of referral the service directory routes, with their display names.
CATEGORIES: Mapping[str, str] = {
    "mental-health-assessment": "Mental health assessment",
    "talking-therapies": "Talking therapies",
    "crisis-support": "Crisis support",
    "substance-misuse-treatment": "Substance misuse treatment",
    "alcohol-treatment": "Alcohol treatment",
    "gp-registration": "GP registration",
    "housing-support": "Housing support",
}
URGENCIES = ("routine", "urgent")
