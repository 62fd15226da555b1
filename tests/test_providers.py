"""Issue #17 item 4: an external provider validates only when the platform glue can serve it.

The glue (agents/_platform/voxplane_agent.py) builds every role's client with livekit-plugins-openai
and refuses to start without VOXPLANE_<ROLE>_MODEL: so a provider must serve the OpenAI API for its
role and must name its model. Validation says so, from one table (voxplane/manifest/providers.py) that the
schema's documentation repeats and that the pinned plugin itself reaches.
"""

from __future__ import annotations

import ast
import re
import subprocess
from pathlib import Path

from voxplane.deploy import agent_base
from voxplane.manifest.providers import GENERIC, OPENAI_COMPATIBLE
from voxplane.manifest.schema_files import raw_schemas

from tests.support.repo import REPO

GLUE = REPO / agent_base.FOLDER / agent_base.GLUE
ROLES = {"stt": "STT", "llm": "LLM", "tts": "TTS"}


def _function(tree: ast.Module, name: str) -> ast.FunctionDef:
    (fn,) = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == name]
    return fn


def test_the_glue_reaches_every_provider_through_the_openai_plugin_and_needs_its_model():
    """Each role's client is the openai plugin's, built from inference(ROLE), which needs a model."""
    glue = ast.parse(GLUE.read_text())
    for role, upper in ROLES.items():
        body = ast.unparse(_function(glue, f"_new_{role}"))
        assert f"openai.{upper}(" in body and f"**inference('{upper}')" in body, body
    needed = ast.unparse(_function(glue, "inference"))
    assert re.search(r"for k in \('BASE_URL', 'MODEL'\) if not env\[k\]", needed), needed


def test_a_provider_must_name_its_model():
    provider = raw_schemas()["agent.schema.json"]["$defs"]["provider"]
    assert "model" in provider["required"]


def test_the_schema_documents_the_same_providers():
    """The `name` description (docs/manifest-reference.md) lists exactly the table's names per role."""
    text = raw_schemas()["agent.schema.json"]["$defs"]["provider"]["properties"]["name"]["description"]
    for role, names in OPENAI_COMPATIBLE.items():
        listed = re.search(rf"\b{role}: ([a-z0-9, -]+?);", text)
        assert listed, (role, text)
        assert listed.group(1).split(", ") == [n for n in names if n != GENERIC], role
    assert f"any role: {GENERIC}" in text


def test_every_named_provider_is_one_the_pinned_openai_plugin_reaches():
    """Each named llm/stt provider has a `with_<name>` helper in the livekit-plugins-openai the base
    image pins (a base URL, a key, a model), read from that plugin's source in the agents' venv."""
    proc = subprocess.run(["bash", str(REPO / "scripts" / "ensure-agents-venv.sh"), "--print-path",
                           str(REPO / "agents" / "support")], capture_output=True, text=True, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr[-2000:]
    python = Path(proc.stdout.strip()) / "bin" / "python"
    where = subprocess.run([str(python), "-c", "import livekit.plugins.openai as m, os; print(os.path.dirname(m.__file__))"],
                           capture_output=True, text=True, check=True).stdout.strip()
    spelled = {"xai": "x_ai", "octoai": "octo"}  # the plugin's helper names
    for role in ("llm", "stt"):
        source = (Path(where) / f"{role}.py").read_text()
        helpers = set(re.findall(r"def with_([a-z_]+)\(", source))
        for name in OPENAI_COMPATIBLE[role]:
            if name not in ("openai", GENERIC):
                assert spelled.get(name, name) in helpers, (role, name, sorted(helpers))
