"""The only place that probes CUDA/MPS: device choice, autocast dtype, seeding."""

from __future__ import annotations

import os
import random

import numpy as np
import torch

from gammatune.errors import ConfigError


def resolve_device(name: str = "auto") -> torch.device:
    """Return the device ``train.device`` names; ``auto`` prefers CUDA, then MPS, then CPU.

    Raises:
        ConfigError: A CUDA or MPS device is asked for but not available.
    """
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            f"train.device: {name!r} but no CUDA device is visible; use 'auto' or 'cpu'."
        )
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise ConfigError(
            f"train.device: {name!r} but only {torch.cuda.device_count()} CUDA device(s) exist."
        )
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"train.device: {name!r} but MPS is not available; use 'auto' or 'cpu'.")
    return device


def cpu_threads(setting: int | str = "auto") -> int:
    """Return the CPU threads a training process should use (``train.threads``).

    An integer is taken as it is. ``auto`` takes the CPUs this process may run on less the
    machine's load (the 1-minute load average, rounded), at least 1 and at most torch's
    default (the physical cores); an ``OMP_NUM_THREADS`` in the environment is the user's
    choice and wins. The small networks gammatune trains gain little from a second thread and
    lose much when the threads wait for CPUs that others hold: on a busy 2-core machine one
    thread ran the demo 1.7x faster than two (docs/guide/speed-threads.md).
    """
    if isinstance(setting, int):
        return setting
    if os.environ.get("OMP_NUM_THREADS", "").isdigit():
        return max(1, int(os.environ["OMP_NUM_THREADS"]))
    available = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    available = available or os.cpu_count() or 1
    busy = round(os.getloadavg()[0]) if hasattr(os, "getloadavg") else 0
    return max(1, min(torch.get_num_threads(), available - busy))


def use_threads(setting: int | str = "auto") -> int:
    """Set torch's intra-op threads to :func:`cpu_threads` and return the number."""
    threads = cpu_threads(setting)
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    return threads


def autocast_dtype(device: torch.device, precision: str = "auto") -> torch.dtype | None:
    """Return the autocast dtype for ``train.precision`` on ``device``, or None for float32.

    ``auto`` is bfloat16 on a CUDA device that supports it and on a CPU with native bfloat16
    matrix instructions (AVX512-BF16 or AMX: about 4x the float32 matmul rate), float32
    elsewhere. Evaluation always runs in float32.

    Raises:
        ConfigError: float16 asked for off CUDA.
    """
    if precision == "fp32":
        return None
    if precision == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else None
        return torch.bfloat16 if device.type == "cpu" and _cpu_has_native_bf16() else None
    if precision == "fp16" and device.type != "cuda":
        raise ConfigError(f"train.precision: 'fp16' needs a CUDA device; the device is {device}.")
    return torch.bfloat16 if precision == "bf16" else torch.float16


def _cpu_has_native_bf16() -> bool:
    try:  # oneDNN's own check for AVX512-BF16/AMX; absent from some builds
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def visible_gpus() -> list[str]:
    """The CUDA devices this process may use, as ``CUDA_VISIBLE_DEVICES`` entries."""
    if not torch.cuda.is_available():
        return []
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed:
        return [d.strip() for d in listed.split(",") if d.strip()]
    return [str(i) for i in range(torch.cuda.device_count())]


def device_name(device: torch.device) -> str:
    """Return a readable device name, e.g. ``'cuda:0 (NVIDIA H100 80GB HBM3)'`` or ``'cpu'``."""
    if device.type == "cuda":
        index = device.index or 0
        return f"cuda:{index} ({torch.cuda.get_device_name(index)})"
    return str(device)
