"""What the preflight expects and what NVML saw, compared: pure data in, the verdict out."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any, Optional

MIB = 1024**2
GIB = 1024**3
#: A GPU passes the memory check when NVML reports at least this share of the declared memory:
#: with ECC on, GDDR cards report about 1/16 less than their size (an L4 sold as 24 GB reports
#: 23034 MiB, an L40S 46068 MiB), HBM cards a little less (an H100 80GB 81559 MiB). A card with
#: much less memory than declared is another card, or a slice of one.
MEMORY_SHARE = 0.9
#: Kubernetes keeps at most 4096 bytes of a termination message.
MESSAGE_LIMIT = 4096


@dataclass(frozen=True)
class Expected:
    """What the render declares for this pod's GPUs."""

    gpus: int
    #: The node group's `gpu_product`, as GPU Feature Discovery labels it (`nvidia.com/gpu.product`:
    #: NVML's name with spaces as dashes).
    product: str
    memory_gib: float
    #: Lowest CUDA version (major.minor) the driver must support; None: not checked.
    min_cuda: Optional[str] = None
    #: For the messages: the node group and the model.
    group: str = ""
    model: str = ""


@dataclass(frozen=True)
class Gpu:
    name: str
    memory_mib: int
    mig: bool
    uuid: str = ""

    @property
    def product(self) -> str:
        """The name as GPU Feature Discovery's `nvidia.com/gpu.product` label writes it."""
        return self.name.replace(" ", "-")


@dataclass(frozen=True)
class Seen:
    """What NVML reported."""

    gpus: tuple[Gpu, ...]
    driver: str
    #: The highest CUDA version the driver supports, `major.minor`.
    cuda: str


@dataclass(frozen=True)
class Verdict:
    ok: bool
    #: One line for a person: what was checked and found, or everything that differs.
    line: str
    seen: Optional[Seen] = None
    problems: tuple[str, ...] = field(default=())

    def message(self) -> str:
        """The termination message: JSON, within Kubernetes' limit (GPUs dropped before the line)."""
        body: dict[str, Any] = {"ok": self.ok, "line": self.line, "problems": list(self.problems)}
        if self.seen is not None:
            body.update(driver=self.seen.driver, cuda=self.seen.cuda, gpus=[asdict(g) for g in self.seen.gpus])
        text = json.dumps(body, separators=(",", ":"))
        if len(text.encode()) > MESSAGE_LIMIT:
            body.pop("gpus", None)
            text = json.dumps(body, separators=(",", ":"))[:MESSAGE_LIMIT]
        return text


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split("."))


def compare(expected: Expected, seen: Seen) -> Verdict:
    """Every difference between what the pod was promised and what NVML sees, in one verdict."""
    problems: list[str] = []
    where = f"node group {expected.group}" if expected.group else "the node group"
    if len(seen.gpus) != expected.gpus:
        problems.append(f"NVML sees {len(seen.gpus)} GPU{'s' if len(seen.gpus) != 1 else ''}, "
                        f"the model asks for {expected.gpus} (gpus_per_replica)")
    for i, gpu in enumerate(seen.gpus):
        if gpu.product != expected.product:
            problems.append(f"GPU {i} is {gpu.product}, {where} declares {expected.product} (gpu_product)")
        if gpu.memory_mib * MIB < MEMORY_SHARE * expected.memory_gib * GIB:
            problems.append(f"GPU {i} has {gpu.memory_mib * MIB / GIB:.1f} GiB, {where} declares "
                            f"{expected.memory_gib:g} GiB (gpu_memory_gib)")
        if gpu.mig:
            problems.append(f"GPU {i} is in MIG mode (sliced), {where} declares whole GPUs")
    if expected.min_cuda is not None and _version(seen.cuda) < _version(expected.min_cuda):
        problems.append(f"driver {seen.driver} supports CUDA {seen.cuda}, the server needs CUDA {expected.min_cuda}")
    found = _describe(seen)
    if problems:
        model = f" of model {expected.model}" if expected.model else ""
        return Verdict(False, f"gpu preflight{model}: failed: {'; '.join(problems)} (NVML: {found})", seen, tuple(problems))
    return Verdict(True, f"gpu preflight: ok: {found}", seen)


def _describe(seen: Seen) -> str:
    """`1 x NVIDIA-L4 (22.5 GiB), MIG off, driver 570.124.06, CUDA 12.8`."""
    kinds: dict[tuple[str, int], int] = {}
    for gpu in seen.gpus:
        kinds[(gpu.product, gpu.memory_mib)] = kinds.get((gpu.product, gpu.memory_mib), 0) + 1
    gpus = ", ".join(f"{n} x {product} ({mib * MIB / GIB:.1f} GiB)" for (product, mib), n in kinds.items()) or "no GPU"
    mig = "MIG on" if any(g.mig for g in seen.gpus) else "MIG off"
    return f"{gpus}, {mig}, driver {seen.driver}, CUDA {seen.cuda}"


def no_gpu(error: str, reason: str) -> Verdict:
    """NVML could not be used at all (`error`: its exception class, `reason`: its message)."""
    line = (f"gpu preflight: failed: NVML cannot be used here ({error}: {reason}): "
            f"{HINTS.get(error, 'no NVIDIA GPU is visible here')}")
    return Verdict(False, line, None, (f"{error}: {reason}",))


#: What each NVML failure most likely means in a model pod.
HINTS = {
    "NVMLError_LibraryNotFound": "no NVIDIA driver is visible here (a node without a GPU, or a "
                                 "container the NVIDIA container toolkit gave none)",
    "NVMLError_DriverNotLoaded": "the node's NVIDIA kernel driver is not loaded",
    "NVMLError_NoPermission": "the container may not open the GPU devices",
}
