"""The torch device a user names (``--device``, the Space): checked before any weights are loaded.

``torch.device("cuda")`` succeeds on a CPU-only torch and only the first tensor moved there fails,
deep inside diffusers; checking availability here turns that into one clear line.
"""

from __future__ import annotations

import torch

from .errors import InputError

__all__ = ["resolve_device"]

_EXAMPLES = "cpu, cuda, cuda:0, mps"


def resolve_device(name: str) -> torch.device:
    """``name`` as a torch device this machine has, or ``InputError`` naming the device and what is available."""
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise InputError(f"--device {name!r} is not a torch device (e.g. {_EXAMPLES})") from None
    if device.type == "cpu":
        # one CPU: "cpu:0" as plain "cpu" (accelerate names a CPU process's device so). Moving a pipeline to "cpu:0"
        # copies its weights out of the loaded file's buffers into freshly aligned memory, where MKL's kernels sum
        # in another order: other bytes than --device cpu for the same seed
        return torch.device("cpu")
    if device.type == "meta":
        raise InputError("--device 'meta' holds no data and cannot generate volumes; use a real device "
                         f"({_EXAMPLES})")
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise InputError(f"--device {name!r}: this torch ({torch.__version__}) sees no CUDA GPU; use --device cpu")
        if device.index is not None and device.index >= count:
            raise InputError(f"--device {name!r}: only {count} CUDA device(s) (cuda:0..cuda:{count - 1})")
        return device
    if device.type == "mps":
        if not torch.backends.mps.is_available():
            raise InputError(f"--device {name!r}: Apple MPS is not available in this torch; use --device cpu")
        return device
    backend = getattr(torch, device.type, None)
    if backend is None or not hasattr(backend, "is_available") or not backend.is_available():
        raise InputError(f"--device {name!r}: no {device.type} device is available in this torch; use --device cpu")
    return device
