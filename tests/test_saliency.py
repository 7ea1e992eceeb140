"""Eq. 2: per-trajectory means, then the mean over trajectories; empty spans skipped; packing exact."""

import numpy as np
import pytest
import torch

from arm_ray.architectures import MlpNames
from arm_ray.roles.spans import Encoded
from arm_ray.saliency import (
    SaliencyTracer,
    TraceResult,
    pack_trajectories,
    read_saliency,
    saliency_table,
)


class ToyMLP(torch.nn.Module):
    def __init__(self, d_ff):
        super().__init__()
        self.down_proj = torch.nn.Identity()
        self.d_ff = d_ff

    def forward(self, x):
        return self.down_proj(x)


class ToyModel(torch.nn.Module):
    """z_l(t) = the input embedding itself: the saliency can be computed by hand."""

    base_model_prefix = "model"

    def __init__(self, table):
        super().__init__()
        self.emb = torch.nn.Embedding.from_pretrained(table)
        self.model = self
        self.layers = torch.nn.ModuleList([ToyMLP(table.shape[1])])
        self.p = torch.nn.Parameter(torch.zeros(1))

    def forward(self, input_ids, position_ids=None, use_cache=False):
        return self.layers[0](self.emb(input_ids))


NAMES = MlpNames(down="layers.{l}.down_proj")


def enc(ids, pos, bench="b"):
    return Encoded(np.array(ids), {"r": np.array(pos, dtype=np.int64)}, benchmark=bench)


def test_per_trajectory_then_per_set_mean():
    table = torch.tensor([[1.0, -2.0], [3.0, 0.0], [-5.0, 4.0], [0.5, 0.5]])
    trajs = [enc([0, 1, 2], [0, 1]),  # mean |z| over t in {0,1}: [2, 1]
             enc([2, 3], [0]),  # [5, 4]
             enc([3, 3], [])]  # no role token: skipped
    packed = pack_trajectories(trajs, [("b", "r")], max_tokens=4)
    assert packed.n_trajectories == [2] and packed.n_tokens == [3]
    assert len(packed.packs) == 2  # 3 + 2 tokens do not fit in 4
    sums = SaliencyTracer(ToyModel(table), NAMES, 1, 2, 1).run(packed.packs)
    r = TraceResult("m", "expert", packed.groups, sums, packed.n_trajectories, packed.n_tokens)
    assert r.saliency("b", "r").tolist() == [[3.5, 2.5]]  # mean of [2, 1] and [5, 4]; token-mean would be [3, 2]


def test_packing_does_not_change_the_result():
    table = torch.randn(10, 3)
    trajs = [enc(list(np.arange(i, i + 4) % 10), [1, 3]) for i in range(5)]
    a = SaliencyTracer(ToyModel(table), NAMES, 1, 3, 1).run(pack_trajectories(trajs, [("b", "r")], 4).packs)
    b = SaliencyTracer(ToyModel(table), NAMES, 1, 3, 1).run(pack_trajectories(trajs, [("b", "r")], 100).packs)
    np.testing.assert_allclose(a, b, rtol=1e-6)


def test_packed_qwen3_equals_one_sequence_at_a_time(perturbed_pool, tokenizer):
    from transformers import AutoModelForCausalLM

    from arm_ray.architectures import mlp_names
    from arm_ray.roles.formats import load_trajectories
    from arm_ray.roles.spans import TrajectoryEncoder

    model = AutoModelForCausalLM.from_pretrained(perturbed_pool / "base").eval()
    trajs = load_trajectories(perturbed_pool / "calibration" / "agentbench_os.jsonl").trajectories
    encoded = TrajectoryEncoder(tokenizer).encode(trajs, ["action"])
    cfg = model.config
    args = (model, mlp_names("qwen3"), cfg.num_hidden_layers, cfg.intermediate_size, 1)
    packed = SaliencyTracer(*args).run(pack_trajectories(encoded, [("agentbench_os", "action")], 4096).packs)
    single = SaliencyTracer(*args).run(pack_trajectories(encoded, [("agentbench_os", "action")], 1).packs)
    assert len(pack_trajectories(encoded, [("agentbench_os", "action")], 4096).packs) == 1
    np.testing.assert_allclose(packed, single, rtol=1e-4, atol=1e-6)


def test_parquet_round_trip(tmp_path):
    import pyarrow.parquet as pq

    sums = np.arange(12, dtype=np.float32).reshape(2, 2, 3)
    r = TraceResult("g", "candidate", [("b", "r"), ("b", "response")], sums, [2, 4], [5, 9])
    pq.write_table(saliency_table([r]), tmp_path / "s.parquet")
    t = pq.read_table(tmp_path / "s.parquet")
    assert t.num_rows == 4 and t.schema.field("values").type.value_type.bit_width == 32
    back = read_saliency(tmp_path / "s.parquet")
    np.testing.assert_array_equal(back[("g", "b", "response")], sums[:, 1, :] / 4)
    with pytest.raises(ValueError):
        TraceResult("g", "candidate", [("b", "r")], sums[:, :1], [0], [0]).saliency("b", "r")


def test_hook_equals_the_mlp_computed_from_its_own_weights(perturbed_pool, tokenizer):
    """Eq. 2 on Qwen3, independently: z = silu(x W_gate^T) * (x W_up^T) from each layer's input x and weights,
    one trajectory at a time without packing, then the per-trajectory and per-set means by hand."""
    from transformers import AutoModelForCausalLM

    from arm_ray.architectures import mlp_names
    from arm_ray.roles.formats import load_trajectories
    from arm_ray.roles.spans import TrajectoryEncoder

    model = AutoModelForCausalLM.from_pretrained(perturbed_pool / "expert_tau_bench").eval()
    trajs = load_trajectories(perturbed_pool / "calibration" / "tau_bench.jsonl").trajectories
    encoded = TrajectoryEncoder(tokenizer).encode(trajs, ["tool_call"])
    cfg = model.config
    layers = model.model.layers
    inputs: dict[int, torch.Tensor] = {}
    hooks = [layers[i].mlp.register_forward_pre_hook(lambda m, a, i=i: inputs.__setitem__(i, a[0][0]))
             for i in range(cfg.num_hidden_layers)]
    per_trajectory = []
    with torch.no_grad():
        for e in encoded:
            model(input_ids=torch.from_numpy(e.input_ids)[None])
            pos = torch.from_numpy(e.positions["tool_call"])
            rows = []
            for i in range(cfg.num_hidden_layers):
                x, mlp = inputs[i].double(), layers[i].mlp
                z = torch.nn.functional.silu(x @ mlp.gate_proj.weight.double().T) * (x @ mlp.up_proj.weight.double().T)
                rows.append(z[pos].abs().mean(0))
            per_trajectory.append(torch.stack(rows))
    for h in hooks:
        h.remove()
    expected = torch.stack(per_trajectory).mean(0).numpy()

    packed = pack_trajectories(encoded, [("tau_bench", "tool_call")], 4096)
    sums = SaliencyTracer(model, mlp_names("qwen3"), cfg.num_hidden_layers, cfg.intermediate_size, 1).run(
        packed.packs)
    got = TraceResult("m", "expert", packed.groups, sums, packed.n_trajectories, packed.n_tokens).saliency(
        "tau_bench", "tool_call")
    assert packed.n_trajectories == [len(encoded)] and expected.shape == got.shape
    np.testing.assert_allclose(got, expected, rtol=2e-4, atol=1e-6)


def test_group_matrix_and_the_matmul_sum_by_hand():
    """W[g, i] is position i's weight in its own group's row; W @ |z| is the weighted sum per group."""
    from arm_ray.saliency import Pack, group_matrix

    pack = Pack(torch.zeros(1, 4, dtype=torch.long), torch.arange(4)[None], torch.tensor([0, 2, 3]),
                torch.tensor([1, 0, 1]), torch.tensor([0.5, 1.0, 0.25]))
    w = group_matrix(pack, 2)
    assert torch.equal(w, torch.tensor([[0.0, 1.0, 0.0], [0.5, 0.0, 0.25]]))
    z = torch.tensor([[1.0, -2.0], [3.0, 4.0], [-5.0, 6.0]])
    assert torch.equal(w @ z.abs(), torch.tensor([[3.0, 4.0], [1.75, 2.5]]))
