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


def test_readme_images_table_lists_every_platform_image():
    """Every image the repository's stacks build from a folder of the platform (not a tenant's agent)
    has its row under the README's `## Images`, with its build context: a new platform image
    without one fails here."""
    from voxplane.images.stack import repository_images

    section = (REPO / "README.md").read_text().split("\n## Images\n", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    platform = [image for image in repository_images(REPO, "registry.invalid/vox")
                if image.context.resolve().is_relative_to((REPO / "voxplane").resolve())
                or image.context.resolve() == (REPO / "agents/_platform").resolve()]
    assert len(platform) >= 6
    for image in platform:
        repository = image.repository.rsplit("/", 1)[1]
        context = image.context.resolve().relative_to(REPO.resolve()).as_posix() + "/"
        assert any(f"| `{repository}` | `{context}`" in row for row in rows), (repository, context)
