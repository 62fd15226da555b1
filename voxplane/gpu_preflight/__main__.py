"""`python -m voxplane.gpu_preflight --gpus N --product NAME --memory-gib G`: the init container's
command. Prints one line (the verdict), writes the verdict as JSON to `--report` (the container's
termination message file) and exits 0 when everything matches, 1 when anything differs or NVML
cannot be used (never a traceback), 2 for bad arguments."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional, Sequence

from .check import Expected, Verdict, compare, no_gpu

#: Where Kubernetes reads a container's termination message from (terminationMessagePath default).
TERMINATION_LOG = "/dev/termination-log"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m voxplane.gpu_preflight",
                                description="Check the GPUs NVML sees against what the model pod was promised.")
    p.add_argument("--gpus", type=int, required=True, help="GPUs the pod requests (the model's gpus_per_replica)")
    p.add_argument("--product", required=True,
                   help="the node group's gpu_product, as GPU Feature Discovery labels it (NVML's name, dashes for spaces)")
    p.add_argument("--memory-gib", type=float, required=True, help="the node group's gpu_memory_gib (per GPU)")
    p.add_argument("--min-cuda", help="lowest CUDA version (major.minor) the driver must support")
    p.add_argument("--group", default="", help="the node group's name, for the messages")
    p.add_argument("--model", default="", help="the model's name, for the messages")
    p.add_argument("--report", default=TERMINATION_LOG,
                   help=f"file the verdict is written to as JSON (default {TERMINATION_LOG}; '-' for none)")
    return p


def run(expected: Expected) -> Verdict:
    from .nvml import NvmlUnavailable, read

    try:
        seen = read()
    except NvmlUnavailable as e:
        return no_gpu(e.error, e.reason)
    return compare(expected, seen)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parser().parse_args(argv)
    verdict = run(Expected(args.gpus, args.product, args.memory_gib, args.min_cuda, args.group, args.model))
    print(verdict.line, file=sys.stdout if verdict.ok else sys.stderr, flush=True)
    if args.report != "-":
        try:
            Path(args.report).write_text(verdict.message())
        except OSError as e:
            print(f"gpu preflight: cannot write the report to {args.report}: {e.strerror}", file=sys.stderr)
    return 0 if verdict.ok else 1


if __name__ == "__main__":
    sys.exit(main())
