"""The schema documents (schemas/*.json, shipped as voxplane.schemas), read once, as plain data.

Apart from `schema` (validators, located errors, defaults) so that what reads the schemas for
another purpose (`secret_fields`: where secrets sit; the reference docs) needs nothing else.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

SCHEMA_FILES = {"region": "region.schema.json", "agent": "agent.schema.json"}


@cache
def raw_schemas() -> dict[str, dict[str, Any]]:
    """Schema documents keyed by file name (`region.schema.json`, ...)."""
    folder = resources.files("voxplane.schemas")
    return {name: json.loads(folder.joinpath(name).read_text()) for name in SCHEMA_FILES.values()}
