"""docs/manifest-reference.md is generated from the schemas and must match them."""

from voxplane.devtools.docs import reference

from .support.repo import REPO


def test_manifest_reference_is_up_to_date():
    """The committed reference equals what the schemas generate (run `make docs` after a schema change)."""
    assert (REPO / "docs/manifest-reference.md").read_text() == reference()


def test_reference_lists_every_top_level_field():
    """Each top-level property of both schemas has a row."""
    text = reference()
    for field in ("name", "livekit", "sip", "tenants", "gpu_node_groups", "models", "code", "scaling", "telephony", "inference"):
        assert f"| `{field}` |" in text
