"""The demo's partners and their settings: for the demo, tests and benchmarks, never real data.

The partner directory here has secrets committed beside it (secrets.json) and the person key
below is public, so the hub never falls back to them: the demo sets them explicitly.
"""

from __future__ import annotations

import os
from pathlib import Path

DEMO = Path(__file__).parent
DEMO_SETTINGS = {
    "CONCORD_PARTNERS": str(DEMO / "partners.yaml"),
    "CONCORD_PERSON_KEY": "concord-demo-person-key",
    "CONCORD_PAGES_SECRET": "concord-demo-pages-secret",
    "CONCORD_USERS": str(DEMO / "users.yaml"),
}


def use_demo_settings() -> None:
    """Use the demo partners and person key, unless the environment names others."""
    for name, value in DEMO_SETTINGS.items():
        os.environ.setdefault(name, value)
