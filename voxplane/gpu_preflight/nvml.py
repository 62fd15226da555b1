"""What NVML reports, through `pynvml` (nvidia-ml-py): the only module that talks to the driver."""

from __future__ import annotations

import pynvml

from .check import Gpu, Seen


class NvmlUnavailable(Exception):
    """NVML could not be initialised or read; `error` is pynvml's exception class name."""

    def __init__(self, error: str, reason: str) -> None:
        super().__init__(f"{error}: {reason}")
        self.error = error
        self.reason = reason


def read() -> Seen:
    """Every GPU this process can see, the driver version and the CUDA version it supports."""
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as e:
        raise NvmlUnavailable(type(e).__name__, str(e)) from None
    try:
        gpus = tuple(_gpu(pynvml.nvmlDeviceGetHandleByIndex(i)) for i in range(pynvml.nvmlDeviceGetCount()))
        cuda = pynvml.nvmlSystemGetCudaDriverVersion()  # e.g. 12080
        return Seen(gpus, str(pynvml.nvmlSystemGetDriverVersion()), f"{cuda // 1000}.{cuda % 1000 // 10}")
    except pynvml.NVMLError as e:
        raise NvmlUnavailable(type(e).__name__, str(e)) from None
    finally:
        pynvml.nvmlShutdown()


def _gpu(handle: object) -> Gpu:
    try:
        mig = pynvml.nvmlDeviceGetMigMode(handle)[0] == pynvml.NVML_DEVICE_MIG_ENABLE
    except pynvml.NVMLError_NotSupported:
        mig = False  # a GPU without MIG support is whole
    return Gpu(
        name=str(pynvml.nvmlDeviceGetName(handle)),
        memory_mib=int(pynvml.nvmlDeviceGetMemoryInfo(handle).total) // (1024 * 1024),
        mig=mig,
        uuid=str(pynvml.nvmlDeviceGetUUID(handle)),
    )
