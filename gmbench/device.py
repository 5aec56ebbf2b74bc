"""The compute device a run asks for: ``cpu``, ``cuda`` or ``cuda:N``, checked once."""

from __future__ import annotations

from gmbench.errors import GmbenchError

__all__ = ["parse_device"]


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
