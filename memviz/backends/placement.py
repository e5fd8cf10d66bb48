"""Where a model runs and in what dtype: `--device auto|cpu|cuda|mps`, `--dtype float32|bfloat16|float16`.

`auto` takes the GPU where there is one (CUDA, then Apple's MPS), else the CPU. The app's Model picker
sets the preferred choice for the loads that follow (`set_preferred`); a command line passes its own.
"""

from __future__ import annotations

from memviz.errors import MemvizError

DEVICES = ("auto", "cpu", "cuda", "mps")
DTYPES = ("float32", "bfloat16", "float16")

_preferred = {"device": "auto", "dtype": "float32"}


def set_preferred(device: str | None = None, dtype: str | None = None) -> None:
    """The device and dtype that loads without their own choice use (the Model picker's)."""
    if device is not None:
        _check(device, DEVICES, "--device")
        _preferred["device"] = device
    if dtype is not None:
        _check(dtype, DTYPES, "--dtype")
        _preferred["dtype"] = dtype


def preferred() -> tuple[str, str]:
    return _preferred["device"], _preferred["dtype"]


def _check(value: str, allowed: tuple[str, ...], option: str) -> None:
    if value not in allowed:
        raise MemvizError(f"{option} {value!r}: choose one of {', '.join(allowed)}")


def resolve_device(device: str | None) -> str:
    """A torch device name for `device` (None: the preferred one); refuses a device this machine lacks."""
    import torch

    device = device or _preferred["device"]
    _check(device, DEVICES, "--device")
    cuda = torch.cuda.is_available()
    mps = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    if device == "auto":
        return "cuda" if cuda else "mps" if mps else "cpu"
    if device == "cuda" and not cuda:
        raise MemvizError("--device cuda: no CUDA GPU is available to torch here (try --device auto)")
    if device == "mps" and not mps:
        raise MemvizError("--device mps: Apple's MPS is not available to torch here (try --device auto)")
    return device


def resolve_dtype(dtype: str | None):
    import torch

    dtype = dtype or _preferred["dtype"]
    _check(dtype, DTYPES, "--dtype")
    return getattr(torch, dtype)
