"""Benchmark: validate 1,000 generated agent manifests.

Prints our full validation (YAML with line tracking, schema, defaults, typed model, cross-file
checks) against a baseline measured in the same run: plain `yaml.load` (libyaml) plus plain
`jsonschema` validation of the same documents, without line tracking. Best of several rounds.
Targets (issue #2): ratio <= 2.0 and 1,000 manifests < 2 s.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from voxplane.manifest.loader import load  # noqa: E402
from voxplane.manifest.schema import validator  # noqa: E402

TEMPLATE = """\
# yaml-language-server: $schema=../schemas/agent.schema.json
name: agent-{i}
tenant: {tenant}
description: Generated agent number {i} for the validation benchmark.
regions: [us-east]
code:
  image: bench/agent-{i}:1.0.{i}
env:
  LOG_LEVEL: info
  FEATURE_FLAGS: "a,b,c"
secrets:
  CRM_TOKEN: {{ secret: crm-{i}, key: token }}
resources: {{ cpu: "1", memory: 2Gi }}
scaling:
  min_workers: 1
  max_workers: 10
  sessions_per_worker: 8
  drain_timeout: 1800
telephony:
  numbers: ["+1312{num:07d}"]
  allowed_addresses: [192.76.120.10/32]
  dispatch: {{ kind: individual, room_prefix: call }}
inference:
  stt: {{ model: whisper }}
  tts: {{ model: kokoro }}
  llm: {{ model: chat }}
"""


def generate(root: Path, count: int) -> list[Path]:
    (root / "agents").mkdir(parents=True)
    shutil.copytree(REPO / "regions", root / "regions")
    files = []
    for i in range(count):
        path = root / "agents" / f"agent-{i}.yaml"
        tenant = "bellavista" if i % 2 else "northwind"
        path.write_text(TEMPLATE.format(i=i, tenant=tenant, num=i))
        files.append(path)
    return files


def baseline(files: list[Path]) -> int:
    check = validator("agent")
    errors = 0
    for path in files:
        doc = yaml.load(path.read_bytes(), Loader=yaml.CSafeLoader)
        errors += sum(1 for _ in check.iter_errors(doc))
    return errors


def ours(root: Path) -> int:
    return len(load((), root).problems)


def best_of(rounds: int, fn, *args) -> tuple[float, int]:
    best, result = float("inf"), 0
    for _ in range(rounds):
        start = time.perf_counter()
        result = fn(*args)
        best = min(best, time.perf_counter() - start)
    return best, result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        files = generate(root, args.count)
        validator("agent")  # compile once, outside the timings
        base_s, base_errors = best_of(args.rounds, baseline, files)
        our_s, our_problems = best_of(args.rounds, ours, root)
    assert base_errors == 0 and our_problems == 0, (base_errors, our_problems)
    n = args.count
    print(f"manifests:                       {n}")
    print(f"baseline (libyaml + jsonschema): {base_s:.3f} s  {base_s / n * 1e3:.3f} ms/manifest")
    print(f"voxplane validate (full):        {our_s:.3f} s  {our_s / n * 1e3:.3f} ms/manifest")
    print(f"ratio voxplane/baseline:         {our_s / base_s:.2f}x  (target <= 2.0x)")
    print(f"1,000 manifests under 2 s:       {'yes' if our_s / n * 1000 < 2.0 else 'no'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
