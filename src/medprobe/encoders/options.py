"""How an encoder is built: device, precision, weights, remote-code opt-in (torch-free, so
listing the zoo stays fast)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

from medprobe.errors import MedprobeError

Precision = Literal["fp32", "bf16", "fp16"]
PRECISIONS: tuple[str, ...] = get_args(Precision)
_DEVICE = re.compile(r"^(cpu|cuda(:\d+)?)$")


def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda`` when a GPU is visible, else ``cpu``; ``cpu`` / ``cuda[:N]`` as given
    (a GPU asked for but absent is one clear sentence)."""
    if device != "auto" and not _DEVICE.match(device):
        raise MedprobeError(f"device must be auto, cpu, cuda or cuda:N; got {device!r}")
    if device == "cpu":
        return device
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if not torch.cuda.is_available():
        raise MedprobeError(f"device {device!r} asked for, but no CUDA GPU is visible")
    index = int(device.partition(":")[2] or 0)
    if index >= torch.cuda.device_count():
        raise MedprobeError(
            f"device {device!r} asked for, but only {torch.cuda.device_count()} GPU(s) exist"
        )
    return device


def check_precision(precision: str) -> Precision:
    """``precision`` if it is fp32, bf16 or fp16; otherwise one clear sentence."""
    if precision not in PRECISIONS:
        raise MedprobeError(f"precision must be fp32, bf16 or fp16; got {precision!r}")
    return precision  # type: ignore[return-value]


@dataclass(frozen=True)
class BuildOptions:
    """What :func:`create_encoder` was asked for (device already resolved from ``auto``)."""

    device: str = "cpu"
    precision: Precision = "fp32"
    weights: Path | None = None
    trust_remote_code: bool = False


@dataclass(frozen=True)
class WeightsRef:
    """The exact weights an encoder was built from: a hub ``repo@commit`` or a local path, and
    the content hash of the weight files."""

    source: str | None = None
    digest: str | None = None
