"""Where each architecture keeps its MLP: data, not code (as mergekit does).

`down` is the module whose INPUT is z_l = act(gate x) * up x; `gate`/`up` are
the separate input projections, or `gate_up` the fused one ([2*d_ff, d]).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class MlpNames:
    gate: str | None = "model.layers.{l}.mlp.gate_proj"
    up: str | None = "model.layers.{l}.mlp.up_proj"
    down: str = "model.layers.{l}.mlp.down_proj"
    gate_up: str | None = None  # fused: neuron j is rows j and d_ff + j


GATED = MlpNames()
FUSED = MlpNames(gate=None, up=None, gate_up="model.layers.{l}.mlp.gate_up_proj")

# model_type (config.json) -> MLP layout
ARCHITECTURES: dict[str, MlpNames] = {
    "llama": GATED,
    "mistral": GATED,
    "qwen2": GATED,
    "qwen3": GATED,
    "gemma": GATED,
    "gemma2": GATED,
    "olmo2": GATED,
    "phi3": FUSED,
}


def mlp_names(model_type: str) -> MlpNames:
    try:
        return ARCHITECTURES[model_type]
    except KeyError:
        raise KeyError(f"model_type {model_type!r} has no MLP layout; known: {', '.join(sorted(ARCHITECTURES))}"
                       " (add one to arm_ray.architectures.ARCHITECTURES)") from None
