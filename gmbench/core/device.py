"""The compute device a run asks for (``cpu``, ``cuda`` or ``cuda:N``, checked once), and the
platform a run's exact digits depend on."""

from __future__ import annotations

import hashlib
import json

from gmbench.core.errors import GmbenchError

__all__ = ["KERNEL_FLAGS", "cpu_kernels", "parse_device", "platform_id", "platform_record"]

# instruction-set extensions that decide which float kernels MKL and oneDNN dispatch to
KERNEL_FLAGS = ("avx", "avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512_vnni",
                "avx_vnni", "avx512_bf16", "avx512_fp16", "amx_tile", "amx_bf16", "amx_int8")


def cpu_kernels() -> str:
    """The CPU's :data:`KERNEL_FLAGS` (from ``/proc/cpuinfo``), else the processor's name:
    two CPUs of one architecture with different vector units round differently."""
    import platform

    try:
        with open("/proc/cpuinfo") as fh:
            flags = next((line.split(":", 1)[1].split() for line in fh
                          if line.startswith("flags")), [])
    except OSError:
        flags = []
    have = [f for f in KERNEL_FLAGS if f in flags]
    return " ".join(have) if have else platform.processor()


def platform_record() -> dict[str, str]:
    """What a seeded run's exact digits depend on: machine, its vector units, Python, torch
    and numpy builds."""
    import platform

    import numpy
    import torch

    return {"machine": platform.machine(), "cpu": cpu_kernels(), "system": platform.system(),
            "python": platform.python_version(), "torch": torch.__version__,
            "numpy": numpy.__version__}


def platform_id(device: str) -> tuple[dict[str, str], str]:
    """The platform of a run on ``device``: :func:`platform_record` with the device (its name
    on CUDA) and torch's thread count (parallel sums round in another order on another count),
    and its short hash. Two runs with the same hash, seed, options and weights reproduce each
    other's numbers; the regression gate expects them to."""
    import torch

    record = {**platform_record(), "threads": str(torch.get_num_threads()),
              "device": device if device == "cpu" else
              f"{device} ({torch.cuda.get_device_name(torch.device(device))})"}
    digest = hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()[:16]
    return record, digest


def parse_device(text: str) -> str:
    """``cpu``, ``cuda`` or ``cuda:N`` (``cpu:0`` is read as ``cpu``); anything else, or a CUDA
    device torch does not see, is a clear error."""
    import torch

    try:
        device = torch.device(text)
    except (RuntimeError, ValueError):
        raise GmbenchError(f"--device {text!r} is not a device; use cpu, cuda or cuda:N.") \
            from None
    if device.type == "cpu":
        return "cpu"
    if device.type != "cuda":
        raise GmbenchError(f"--device {text!r} is not supported; use cpu, cuda or cuda:N.")
    if not torch.cuda.is_available():
        raise GmbenchError(f"--device {text} was given but torch sees no CUDA device; use "
                           "--device cpu.")
    if device.index is not None and device.index >= torch.cuda.device_count():
        count = torch.cuda.device_count()
        raise GmbenchError(f"--device {text}: torch sees {count} CUDA device(s); use cuda or "
                           f"cuda:0 .. cuda:{count - 1}.")
    return str(device)
