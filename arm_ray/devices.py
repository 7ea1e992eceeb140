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
