"""The GPU preflight (voxplane/gpu_preflight): its comparison of what NVML saw with what the pod was
promised, and, for real on this machine (no GPU, no NVIDIA driver), what it says when NVML cannot
be used: one line and a JSON report, exit 1, never a traceback.

The comparison takes NVML's readings as plain data (`Seen`): the readings themselves come from the
driver (nvml.py) and need a GPU, which scripts/gpu-check.sh exercises where one is at hand.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from voxplane.gpu_preflight.check import MESSAGE_LIMIT, Expected, Gpu, Seen, compare, no_gpu

from .support.repo import REPO

L4 = Gpu("NVIDIA L4", 23034, False, "GPU-0c3a1f1e-0000-0000-0000-000000000001")
H100 = Gpu("NVIDIA H100 80GB HBM3", 81559, False, "GPU-0c3a1f1e-0000-0000-0000-000000000002")
DRIVER, CUDA = "570.124.06", "12.8"


def seen(*gpus: Gpu, cuda: str = CUDA) -> Seen:
    return Seen(tuple(gpus), DRIVER, cuda)


def test_what_the_node_group_declares_passes_with_the_memory_nvml_really_reports():
    """An L4 sold as 24 GB reports 22.5 GiB with ECC on; an H100 80GB 79.6 GiB: both are what
    their groups declare (us-east's l4, 24 GiB; h100, 80 GiB)."""
    l4 = compare(Expected(1, "NVIDIA-L4", 24, group="l4", model="kokoro"), seen(L4))
    assert l4.ok and l4.problems == ()
    assert l4.line == f"gpu preflight: ok: 1 x NVIDIA-L4 (22.5 GiB), MIG off, driver {DRIVER}, CUDA {CUDA}"
    assert compare(Expected(2, "NVIDIA-H100-80GB-HBM3", 80), seen(H100, H100)).ok


@pytest.mark.parametrize("expected,found,problem", [
    (Expected(2, "NVIDIA-L4", 24, group="l4"), seen(L4),
     "NVML sees 1 GPU, the model asks for 2 (gpus_per_replica)"),
    (Expected(1, "NVIDIA-H100-80GB-HBM3", 24, group="h100"), seen(L4),
     "GPU 0 is NVIDIA-L4, node group h100 declares NVIDIA-H100-80GB-HBM3 (gpu_product)"),
    (Expected(1, "NVIDIA-L4", 48, group="l4"), seen(L4),
     "GPU 0 has 22.5 GiB, node group l4 declares 48 GiB (gpu_memory_gib)"),
    (Expected(1, "NVIDIA-H100-80GB-HBM3", 80, group="h100"), seen(Gpu(H100.name, 81559, True)),
     "GPU 0 is in MIG mode (sliced), node group h100 declares whole GPUs"),
    (Expected(1, "NVIDIA-L4", 24, min_cuda="12.8"), seen(L4, cuda="12.4"),
     f"driver {DRIVER} supports CUDA 12.4, the server needs CUDA 12.8"),
])
def test_each_difference_is_named_with_the_field_that_declares_it(expected, found, problem):
    verdict = compare(expected, found)
    assert not verdict.ok
    assert verdict.problems == (problem,)
    assert verdict.line.startswith("gpu preflight: failed: " + problem)
    assert "\n" not in verdict.line


def test_every_difference_is_in_the_one_line():
    verdict = compare(Expected(2, "NVIDIA-H100-80GB-HBM3", 80, group="h100", model="chat"), seen(L4))
    assert len(verdict.problems) == 3
    assert verdict.line == ("gpu preflight of model chat: failed: " + "; ".join(verdict.problems)
                            + f" (NVML: 1 x NVIDIA-L4 (22.5 GiB), MIG off, driver {DRIVER}, CUDA {CUDA})")


def test_cuda_versions_compare_as_numbers_not_text():
    assert compare(Expected(1, "NVIDIA-L4", 24, min_cuda="12.8"), seen(L4, cuda="12.10")).ok


def test_the_report_is_json_within_the_termination_message_limit():
    """Kubernetes keeps 4096 bytes of a termination message: eight GPUs fit with their details;
    far more lose the per-GPU list, never the verdict."""
    eight = compare(Expected(8, "NVIDIA-H100-80GB-HBM3", 80), seen(*[H100] * 8))
    body = json.loads(eight.message())
    assert body["ok"] is True and len(body["gpus"]) == 8 and body["driver"] == DRIVER and body["cuda"] == CUDA
    many = compare(Expected(1, "NVIDIA-H100-80GB-HBM3", 80), seen(*[H100] * 64))
    assert len(many.message().encode()) <= MESSAGE_LIMIT
    assert json.loads(many.message())["ok"] is False and "gpus" not in json.loads(many.message())


def test_without_a_driver_the_hint_says_what_is_missing():
    verdict = no_gpu("NVMLError_LibraryNotFound", "NVML Shared Library Not Found")
    assert not verdict.ok
    assert verdict.line == ("gpu preflight: failed: NVML cannot be used here (NVMLError_LibraryNotFound: NVML Shared "
                            "Library Not Found): no NVIDIA driver is visible here (a node without a GPU, or a container "
                            "the NVIDIA container toolkit gave none)")


def test_on_this_machine_nvml_is_not_found_and_the_preflight_says_so_in_one_line(tmp_path: Path):
    """For real: this machine has no NVIDIA driver, so pynvml's nvmlInit raises
    NVMLError_LibraryNotFound; the command prints one line, writes the report, exits 1."""
    report = tmp_path / "termination-log"
    done = subprocess.run([sys.executable, "-m", "voxplane.gpu_preflight", "--gpus", "1", "--product", "NVIDIA-L4",
                           "--memory-gib", "24", "--model", "kokoro", "--report", str(report)],
                          capture_output=True, text=True, cwd=REPO, timeout=60)
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.splitlines() == [no_gpu("NVMLError_LibraryNotFound", "NVML Shared Library Not Found").line]
    body = json.loads(report.read_text())
    assert body == {"ok": False, "line": done.stderr.strip(),
                    "problems": ["NVMLError_LibraryNotFound: NVML Shared Library Not Found"]}


def test_bad_arguments_are_a_usage_error_not_a_traceback():
    done = subprocess.run([sys.executable, "-m", "voxplane.gpu_preflight", "--gpus", "two", "--product", "x",
                           "--memory-gib", "1"], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr and "argument --gpus: invalid int value: 'two'" in done.stderr
