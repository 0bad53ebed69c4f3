"""Export the envelope's JSON Schema into schemas/, for partners who validate before sending.

Run `python -m schemas.export` after changing the envelope; a test fails while the
committed files are stale.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from pydantic import BaseModel

from schemas.envelope import DeadLetter, Envelope

EXPORTS: dict[str, type[BaseModel]] = {
    "envelope.schema.json": Envelope,
    "deadletter.schema.json": DeadLetter,
}
HERE = Path(__file__).parent


def render(model: type[BaseModel]) -> str:
    """The JSON Schema of a model as committed: sorted keys, two-space indent."""
    schema = model.model_json_schema(mode="serialization")
    schema["$id"] = f"urn:concord:schema:{model.__name__.lower()}:v1"
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


def main() -> int:
    """Write every exported schema next to this module."""
    for name, model in EXPORTS.items():
        (HERE / name).write_text(render(model), encoding="utf-8")
        print(f"wrote schemas/{name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
