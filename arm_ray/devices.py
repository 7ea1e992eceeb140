"""Where a traced model lives: one device, or its decoder layers split over several (pipeline by layers).

A model larger than one GPU is cut into contiguous runs of layers, one run per
device; the embedding, rotary table and final norm sit on the first device.
Each layer (and the final norm) gets a pre-hook that moves its inputs to its own
device, so the forward pass walks across the devices in order. The plan is data
(tensor name -> device), so the weights are streamed straight to their device.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import torch

_LAYER = re.compile(r"\.layers\.(\d+)\.")


@dataclass(frozen=True)
class DevicePlan:
    devices: tuple[str, ...]
    n_layers: int

    def __post_init__(self):
        if not self.devices:
            raise ValueError("a device plan needs at least one device")
        if len(self.devices) > self.n_layers:
            raise ValueError(f"{len(self.devices)} devices for {self.n_layers} layers: a device would hold none")

    @classmethod
    def for_actor(cls, device: str, n_layers: int, devices: tuple[str, ...] | None = None) -> "DevicePlan":
        """`devices` when given (the config's `trace.devices`), else every GPU Ray gave this actor, else the CPU."""
        if devices:
            return cls(tuple(devices), n_layers)
        if device.startswith("cuda") and torch.cuda.device_count() > 1:
            return cls(tuple(f"cuda:{i}" for i in range(torch.cuda.device_count())), n_layers)
        return cls((device,), n_layers)

    @property
    def split(self) -> bool:
        return len(self.devices) > 1

    def layer_device(self, layer: int) -> str:
        return self.devices[layer * len(self.devices) // self.n_layers]

    def device_of(self, name: str) -> str:
        """The device of a tensor or module by its name: its layer's device, else the first."""
        m = _LAYER.search(f".{name}.")
        return self.layer_device(int(m.group(1))) if m else self.devices[0]

    def layers_on(self, device_index: int) -> range:
        layers = [layer for layer in range(self.n_layers)
                  if layer * len(self.devices) // self.n_layers == device_index]
        return range(layers[0], layers[-1] + 1)

    def bytes_per_device(self, sizes: dict[str, int]) -> list[int]:
        """Bytes each device of the plan holds, from tensor name -> bytes."""
        out = [0] * len(self.devices)
        for name, n in sizes.items():
            m = _LAYER.search(f".{name}.")
            out[int(m.group(1)) * len(self.devices) // self.n_layers if m else 0] += n
        return out


def _moved(x: Any, device: torch.device) -> Any:
    if isinstance(x, torch.Tensor):  # to the host must block: the CPU layer would read the copy before it lands
        return x.to(device, non_blocking=device.type != "cpu")
    if isinstance(x, tuple):
        return tuple(_moved(v, device) for v in x)
    if isinstance(x, list):
        return [_moved(v, device) for v in x]
    if isinstance(x, dict):
        return {k: _moved(v, device) for k, v in x.items()}
    return x


def connect(decoder: torch.nn.Module, plan: DevicePlan) -> list:
    """Pre-hooks that carry the hidden states (and masks, positions) to each layer's device; returns the handles."""
    def to(device: str):
        dev = torch.device(device)
        return lambda _m, args, kwargs: (_moved(args, dev), _moved(kwargs, dev))

    handles = [layer.register_forward_pre_hook(to(plan.layer_device(i)), with_kwargs=True)
               for i, layer in enumerate(decoder.layers)]
    handles.append(decoder.norm.register_forward_pre_hook(to(plan.devices[0]), with_kwargs=True))
    return handles


# -- which float type a device computes fast --
# bf16 is fast only where the hardware has bf16 arithmetic: on a CPU without AMX or AVX512-BF16 (an AVX2 EPYC,
# measured by scripts/bench_dtype.py) torch emulates it, and a SmolLM2 training step ran ~27x slower than float32
CPU_BF16_FLAGS = ("amx_bf16", "avx512_bf16")


def cpu_flags(cpuinfo: str | None = None) -> set[str]:
    """The CPU's feature flags (Linux /proc/cpuinfo; empty where there is none)."""
    if cpuinfo is None:
        try:
            with open("/proc/cpuinfo") as f:
                cpuinfo = f.read()
        except OSError:
            return set()
    for line in cpuinfo.splitlines():
        if line.startswith("flags") and ":" in line:
            return set(line.split(":", 1)[1].split())
    return set()


def cpu_has_bf16(cpuinfo: str | None = None) -> bool:
    return any(f in cpu_flags(cpuinfo) for f in CPU_BF16_FLAGS)


def fast_dtype(device: str = "cpu") -> str:
    """`dtype: fast` made concrete on the device that computes: bfloat16 on a GPU that has it and on a CPU with
    AMX or AVX512-BF16, else float32."""
    if device.startswith("cuda"):
        return "bfloat16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "float32"
    return "bfloat16" if cpu_has_bf16() else "float32"


def resolve_dtype(dtype: str, device: str = "cpu") -> str:
    return fast_dtype(device) if dtype == "fast" else dtype


def slow_bf16_warning(field: str, dtype: str, on_cpu: bool) -> str | None:
    """A warning for an explicit bfloat16 on a CPU without bf16 arithmetic (None where there is nothing to say)."""
    if dtype != "bfloat16" or not on_cpu or cpu_has_bf16():
        return None
    return (f"{field}: bfloat16 on this CPU, which has no bf16 arithmetic (no {' or '.join(CPU_BF16_FLAGS)}): "
            "torch emulates it, tens of times slower than float32 (scripts/bench_dtype.py); `dtype: fast` picks "
            "bfloat16 only where the device computes it")
