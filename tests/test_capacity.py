"""`voxplane capacity`: the analytic GPU and worker plan, checked against known anchors."""

from __future__ import annotations

import dataclasses
import json
from decimal import Decimal
from functools import cache

import pytest

from voxplane.plan.capacity import GIB, kv_bytes_per_token, plan
from voxplane.manifest.loader import load_project
from voxplane.manifest.model import Project
from voxplane.manifest.quantity import parse_quantity

from .support.repo import REPO


@cache
def project() -> Project:
    return load_project(REPO)


def _with_model(region: str, model: str, **changes) -> Project:
    """The example project with one model of one region changed (engine_args via `engine_args=`)."""
    p = project()
    reg = p.regions[region]
    new_model = dataclasses.replace(reg.models[model], **changes)
    new_region = dataclasses.replace(reg, models={**reg.models, model: new_model})
    return dataclasses.replace(p, regions={**p.regions, region: new_region})


def test_kv_bytes_per_token_of_llama_3_1_8b_is_128_kib():
    """bf16 Llama-3.1-8B: 2 x 32 layers x 8 KV heads x 128 x 2 bytes = 131,072 B/token (what vLLM's
    ModelConfig reports); an fp8 KV cache halves it (us-east declares kv_cache_dtype fp8)."""
    chat = project().regions["us-east"].models["chat"]
    assert kv_bytes_per_token(chat) == 65_536
    bf16 = dataclasses.replace(chat, engine_args=dataclasses.replace(chat.engine_args, kv_cache_dtype="auto"))
    assert kv_bytes_per_token(bf16) == 131_072


def test_us_east_chat_plan():
    """One H100 (80 GiB x 0.9, 10% activation reserve) minus 8.03B bf16 weights leaves 49.84 GiB of KV:
    ~816k tokens, ~50 streams of 16k context, ~199 calls at a 0.25 duty cycle; 600 peak calls need 4."""
    [chat] = [m for m in plan(project(), "us-east").models if m.model == "chat"]
    assert chat.weights_gib == pytest.approx(14.96, abs=0.01)
    assert chat.kv_budget_gib == pytest.approx(80 * 0.9 * 0.9 - 14.96, abs=0.01)
    assert chat.kv_tokens == int((80 * 0.9 * 0.9 - 8.03e9 * 2 / GIB) * GIB // 65_536)
    assert chat.streams_per_replica == pytest.approx(49.8, abs=0.1)
    assert chat.replicas_needed == 4 and chat.gpus_needed == 4 and chat.status == "ok"


def test_duty_cycle_scales_calls_per_replica():
    """Halving the LLM duty cycle doubles the calls one replica carries."""
    quarter = next(m for m in plan(project(), "us-east", 0.25).models if m.model == "chat")
    eighth = next(m for m in plan(project(), "us-east", 0.125).models if m.model == "chat")
    assert eighth.calls_per_replica == pytest.approx(2 * quarter.calls_per_replica, rel=0.01)
    with pytest.raises(ValueError, match="duty cycle"):
        plan(project(), "us-east", 0)


def test_max_num_seqs_caps_streams():
    """vLLM never batches more than max_num_seqs sequences, however much KV cache is free."""
    chat = project().regions["us-east"].models["chat"]
    capped = _with_model("us-east", "chat", engine_args=dataclasses.replace(chat.engine_args, max_num_seqs=16))
    [m] = [m for m in plan(capped, "us-east").models if m.model == "chat"]
    assert m.streams_per_replica == 16
    assert m.status.startswith("short: needs 10 replicas")


@pytest.mark.parametrize(
    "changes, status",
    [
        ({"profile": None}, "add `profile` to size the KV cache"),
        ({"max_replicas": 2}, "short: needs 4 replicas, max_replicas is 2"),
    ],
)
def test_statuses_say_what_to_do(changes, status):
    """Each gap in the plan names its fix."""
    [m] = [m for m in plan(_with_model("us-east", "chat", **changes), "us-east").models if m.model == "chat"]
    assert m.status == status


def test_weights_that_do_not_fit_leave_no_kv_cache():
    """A 70B bf16 model on one 80 GiB GPU has no room for a KV cache."""
    chat = project().regions["us-east"].models["chat"]
    big = dataclasses.replace(chat.profile, params_billion=70.6, layers=80)
    [m] = [m for m in plan(_with_model("us-east", "chat", profile=big), "us-east").models if m.model == "chat"]
    assert m.kv_tokens == 0
    assert m.status == "weights do not fit: no memory left for the KV cache"


def test_speech_models_get_gpu_counts_only():
    """TTS/STT servers have no KV model: the plan says to load-test them."""
    kokoro = next(m for m in plan(project(), "us-east").models if m.model == "kokoro")
    assert kokoro.kv_tokens is None and kokoro.status.startswith("no analytic model")


def test_tenant_quotas_cover_pools_at_max_workers():
    """Examples: each tenant's quota covers its pools at max_workers; a smaller quota is flagged."""
    for region in ("local", "us-east", "eu-west"):
        assert all(t.status == "ok" for t in plan(project(), region).tenants), region
    p = project()
    eu = p.regions["eu-west"]
    tight = dataclasses.replace(eu.tenants["bellavista"], quotas=dataclasses.replace(eu.tenants["bellavista"].quotas, cpu="16"))
    small = dataclasses.replace(p, regions={**p.regions, "eu-west": dataclasses.replace(eu, tenants={**eu.tenants, "bellavista": tight})})
    [bv] = [t for t in plan(small, "eu-west").tenants if t.tenant == "bellavista"]
    assert (bv.cpu_at_max, bv.cpu_quota) == (50, 16)
    assert bv.status == "quota (cpu) stops the pools below max_workers"


def test_cli_text_and_json(run_cli, monkeypatch):
    """`voxplane capacity us-east` prints the plan; --format json carries the same numbers."""
    monkeypatch.chdir(REPO)
    text = run_cli("capacity", "us-east")
    assert text.exit_code == 0
    assert "agent pools at max_workers: 600 sessions for 600 peak calls (ok)" in text.stdout
    doc = json.loads(run_cli("capacity", "us-east", "--format", "json").stdout)
    chat = next(m for m in doc["models"] if m["model"] == "chat")
    assert chat["replicas_needed"] == 4 and doc["peak_calls"] == 600
    missing = run_cli("capacity", "mars")
    assert missing.exit_code == 1 and "no region 'mars'" in missing.stderr


@pytest.mark.parametrize("text, value", [("500m", "0.5"), ("2", "2"), ("4Gi", str(4 * 2**30)), ("1.5G", "1500000000")])
def test_parse_quantity(text, value):
    """Kubernetes quantities parse to exact numbers (decimal and binary suffixes)."""
    assert parse_quantity(text) == Decimal(value)
