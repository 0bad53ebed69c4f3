"""Export the JSON Schema of every message the hub writes into schemas/: the envelope and dead
letter partners see, and the internal messages of schemas/internal.py.

Run `python -m schemas.export` after changing a model; a test fails while the committed
files are stale.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from pydantic import BaseModel

from schemas.envelope import DeadLetter, Envelope
from schemas.internal import (
    DeadlinesCommand,
    IdentityConflictRecord,
    IdentityFlagsCommand,
    MeasureFact,
    MergeCommand,
    PartnerActivity,
    ReferralInboxEntry,
    ResolveConflictCommand,
    TransferCommand,
)

HERE = Path(__file__).parent
INTERNAL: tuple[type[BaseModel], ...] = (
    MergeCommand,
    TransferCommand,
    DeadlinesCommand,
    IdentityFlagsCommand,
    ResolveConflictCommand,
    PartnerActivity,
    ReferralInboxEntry,
    IdentityConflictRecord,
    MeasureFact,
)
EXPORTS: dict[str, type[BaseModel]] = {
    "envelope.schema.json": Envelope,
    "deadletter.schema.json": DeadLetter,
    **{f"internal-messages/{model.__name__.lower()}.schema.json": model for model in INTERNAL},
}


def example_path(model: type[BaseModel]) -> Path:
    """Where an internal message's example lives: schemas/examples/internal-messages/<name>.json."""
    return HERE / "examples" / "internal-messages" / f"{model.__name__.lower()}.json"


def render(model: type[BaseModel]) -> str:
    """The JSON Schema of a model as committed: sorted keys, two-space indent."""
    schema = model.model_json_schema(mode="serialization")
    schema["$id"] = f"urn:concord:schema:{model.__name__.lower()}:v1"
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


def main() -> int:
    """Write every exported schema under this module's folder."""
    for name, model in EXPORTS.items():
        path = HERE / name
        path.parent.mkdir(exist_ok=True)
        path.write_text(render(model), encoding="utf-8")
        print(f"wrote schemas/{name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
