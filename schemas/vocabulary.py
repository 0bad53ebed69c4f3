"""The hub's own vocabulary, named once: every `urn:concord:*` system and extension the hub and
its partners write, the hub's own source id, and the time zone partners read times in.

Identifier systems that name people are in schemas/identifiers.py beside their checks.
"""

from __future__ import annotations

from typing import Final
from zoneinfo import ZoneInfo

# Who: partners, roles, the hub and its operators.
PARTNER_SYSTEM: Final = "urn:concord:partner"
ROLE_SYSTEM: Final = "urn:concord:role"
OPERATOR_SYSTEM: Final = "urn:concord:operator"
HUB_SOURCE: Final = "concord-hub"  # the envelope source of what the hub itself sends
HUB_ENDPOINT: Final = "urn:concord:hub"

# What: consent, referrals, alerts, audit.
DISCLOSURE_CATEGORY_SYSTEM: Final = "urn:concord:disclosure-category"
REFERRAL_CATEGORY_SYSTEM: Final = "urn:concord:referral-category"
AREA_SYSTEM: Final = "urn:concord:area"
ORGANISATION_TYPE_SYSTEM: Final = "urn:concord:organisation-type"
ALERT_SYSTEM: Final = "urn:concord:alert"
AUDIT_SUBTYPE_SYSTEM: Final = "urn:concord:audit"
DATA_QUALITY_SYSTEM: Final = "urn:concord:data-quality"  # which contradiction a partner is told of
BASIS_PREFIX: Final = "urn:concord:basis:"
CONSENT_PREFIX: Final = "urn:concord:consent:"
# A partner's own record by the id it gave it: `urn:concord:record:<partner>:<resourceType>`.
RECORD_PREFIX: Final = "urn:concord:record:"

# Where in a message: extensions and the systems of delivery's own codes.
RECIPIENT_EXTENSION: Final = "urn:concord:extension:recipient"
REFUSED_RESOURCE: Final = "urn:concord:extension:refused-resource"
REFUSED_EVENT: Final = "urn:concord:extension:refused-event"
FLAGGED_RESOURCE: Final = "urn:concord:extension:flagged-resource"
FLAGGED_EVENT: Final = "urn:concord:extension:flagged-event"
EVENT_ID_SYSTEM: Final = "urn:concord:event-id"
EVENT_TYPE_SYSTEM: Final = "urn:concord:event-type"
FHIR_PATH_SYSTEM: Final = "urn:concord:fhir-path"

# Partners read times as UK wall-clock time; UTC would be an hour out all summer.
UK_TIME: Final = ZoneInfo("Europe/London")
