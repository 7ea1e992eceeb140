"""The recipe end to end in the cases a user can configure, each checked against an independent recomputation.

`recompute` reads only `saliency.parquet` and the config, and redoes Eq. 3-8 in
plain numpy (its own top-k, Jaccard, argmax, protection, set difference and
conflict rules), so a bug in `selection` or `transplant` cannot hide behind
a test that reads back the output under test.
"""

import json
import math

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from arm_ray.checkpoints import open_checkpoint
from arm_ray.config import parse_config
from tests.conftest import tiny_config
from tests.test_pipeline import run_local


def saliency_from_parquet(path) -> dict:
    rows = pq.read_table(path).to_pylist()
    out: dict = {}
    for r in rows:
        out.setdefault((r["model"], r["benchmark"], r["role"]), {})[r["layer"]] = np.array(r["values"], np.float64)
    return {k: np.stack([v[i] for i in sorted(v)]) for k, v in out.items()}


def top_k(s: np.ndarray, k: float) -> np.ndarray:
    n = math.ceil(round(k * s.shape[1], 9))  # ceil(k * d_ff) neurons per layer, ties to the lower index
    mask = np.zeros(s.shape, dtype=bool)
    for layer, row in enumerate(s):
        mask[layer, sorted(range(len(row)), key=lambda j: (-row[j], j))[:n]] = True
    return mask


def recompute(out, cfg: dict, weak: list[str], gaps: dict | None = None) -> dict:
    """selected, aos, transplanted pairs and conflict count, from saliency.parquet and the config alone."""
    sal = saliency_from_parquet(out / "saliency.parquet")
    k = cfg.get("k", 0.1)
    bench = [b for b, spec in cfg["benchmarks"].items() if spec.get("expert")]
    parsed = parse_config(cfg)  # the roles from the config (the parsers' defaults), not from the output under test
    roles = {b: parsed.role_of(b) for b in bench}
    donor = {b: cfg["benchmarks"][b]["expert"] for b in bench}
    expert_set = {b: top_k(sal[donor[b], b, roles[b]], k) for b in bench}
    aos = {}
    for op in cfg["operators"]:
        aos[op["name"]] = {}
        for b in bench:
            c = top_k(sal[op["name"], b, roles[b]], k)
            aos[op["name"]][b] = (c & expert_set[b]).sum() / (c | expert_set[b]).sum()
    means = [(sum(aos[op["name"]].values()) / len(bench), -i, op["name"]) for i, op in enumerate(cfg["operators"])]
    selected = max(means)[2]  # highest mean; among equals, the operator listed first
    backbone_set = {b: top_k(sal[selected, b, roles[b]], k) for b in bench}
    t = {}
    for b in weak:
        t[b] = expert_set[b].copy()
        if cfg.get("protect", True):
            for other in bench:
                if other != b:
                    t[b] &= ~backbone_set[other]
    conflicts = np.zeros_like(expert_set[bench[0]])
    for i, a in enumerate(weak):
        for b in weak[i + 1:]:
            if donor[a] != donor[b]:
                conflicts |= t[a] & t[b]
    final = {b: t[b].copy() for b in weak}
    for layer, j in zip(*np.nonzero(conflicts)):
        wanting = [b for b in weak if t[b][layer, j]]
        winner = None
        if cfg.get("conflict_policy") == "larger_gap" and gaps:
            top = max(gaps[b] for b in wanting)
            leaders = {donor[b] for b in wanting if gaps[b] == top}
            winner = leaders.pop() if len(leaders) == 1 else None
        for b in wanting:
            if donor[b] != winner:
                final[b][layer, j] = False
    return {"selected": selected, "aos": aos, "conflicts": int(conflicts.sum()),
            "transplanted": {b: [[int(x), int(y)] for x, y in zip(*np.nonzero(m))] for b, m in final.items()}}


def check_against_recomputation(out, report, cfg, weak, gaps=None) -> dict:
    expected = recompute(out, cfg, weak, gaps)
    assert report["selected"] == expected["selected"]
    for c in report["candidates"]:
        assert c["aos"] == pytest.approx(expected["aos"][c["name"]], abs=1e-12)
    assert report["transplanted"] == expected["transplanted"]
    assert len(report["conflicts"]) == expected["conflicts"]
    return expected


def test_default_run_matches_recomputation(perturbed_pool, tmp_path):
    cfg = tiny_config(perturbed_pool)
    report = run_local(cfg, tmp_path / "run")
    expected = check_against_recomputation(tmp_path / "run", report, cfg, ["officebench", "agentbench_os"])
    assert any(expected["transplanted"].values())


def test_unprotected_larger_gap_with_extra_roles(perturbed_pool, tmp_path):
    """`protect: false` moves every donor neuron; `larger_gap` gives each conflict to the larger gap;
    `extra_roles` stores the `response` saliency of every traced model."""
    dev = {"tau": {"tau_bench": 0.9}, "office": {"officebench": 0.9}, "os": {"agentbench_os": 0.9}}
    for op in ("average", "ties", "dare_ties"):
        dev[op] = {"tau_bench": 0.2, "officebench": 0.5, "agentbench_os": 0.4}  # gaps 0.7, 0.4, 0.5
    (tmp_path / "dev.json").write_text(json.dumps(dev))
    cfg = tiny_config(perturbed_pool, protect=False, conflict_policy="larger_gap",
                      weak={"dev_results": str(tmp_path / "dev.json"), "threshold": 0.1}, k=0.3)
    cfg["calibration"]["extra_roles"] = ["response"]
    report = run_local(cfg, tmp_path / "run")
    gaps = {"tau_bench": 0.7, "officebench": 0.4, "agentbench_os": 0.5}
    assert [(w["benchmark"], round(w["gap"], 6)) for w in report["weak"]] == [(b, g) for b, g in gaps.items()]
    expected = check_against_recomputation(tmp_path / "run", report, cfg, list(gaps), gaps)
    assert expected["conflicts"] > 0, "k=0.3 on three weak benchmarks should make the donors compete"
    # larger_gap: every conflict went to a benchmark, so the moved neurons are the union minus nothing
    moved = {tuple(p) for pairs in report["transplanted"].values() for p in pairs}
    assert {tuple(p) for p in report["conflicts"]} <= moved
    # unprotected: each weak benchmark keeps its whole donor set but for conflicts lost
    sal = saliency_from_parquet(tmp_path / "run" / "saliency.parquet")
    s_tau = top_k(sal["tau", "tau_bench", "tool_call"], 0.3)
    assert {tuple(p) for p in report["transplanted"]["tau_bench"]} == {tuple(p) for p in np.argwhere(s_tau)}
    roles = {(m, r) for (m, _, r) in sal}
    assert {r for _, r in roles} == {"tool_call", "final_answer", "action", "response"}
    assert {m for m, r in roles if r == "response"} == {"tau", "office", "os", "average", "ties", "dare_ties"}


def test_one_expert_serving_two_benchmarks_traced_in_bf16(perturbed_pool, tmp_path):
    """One expert donates for two benchmarks (never a conflict with itself); bf16 tracing keeps float32 sums."""
    cfg = tiny_config(perturbed_pool,
                      experts={"tau": {"path": str(perturbed_pool / "expert_tau_bench")},
                               "os": {"path": str(perturbed_pool / "expert_agentbench_os")}},
                      benchmarks={"tau_bench": {"expert": "tau"}, "officebench": {"expert": "tau"},
                                  "agentbench_os": {"expert": "os"}},
                      weak={"benchmarks": ["tau_bench", "officebench", "agentbench_os"]},
                      trace={"dtype": "bfloat16", "max_tokens_per_batch": 1024}, k=0.3, protect=False)
    report = run_local(cfg, tmp_path / "run")
    assert [t for t in report["traced"] if t["kind"] == "expert"] == [
        {"model": "tau", "kind": "expert", "benchmarks": ["tau_bench", "officebench"]},
        {"model": "os", "kind": "expert", "benchmarks": ["agentbench_os"]}]
    expected = check_against_recomputation(tmp_path / "run", report, cfg, ["tau_bench", "officebench",
                                                                          "agentbench_os"])
    assert expected["conflicts"] > 0
    # conflicts are only between donors: a neuron tau_bench and officebench both want stays with `tau`
    shared = {tuple(p) for p in report["transplanted"]["tau_bench"]} & \
        {tuple(p) for p in report["transplanted"]["officebench"]}
    assert shared and not shared & {tuple(p) for p in report["conflicts"]}
    assert pq.read_table(tmp_path / "run" / "saliency.parquet").schema.field("values").type.value_type.bit_width == 32
    # the model: officebench's and tau_bench's neurons come from the one expert `tau`
    model = open_checkpoint(str(tmp_path / "run" / "model")).load_state_dict()
    donor = open_checkpoint(str(perturbed_pool / "expert_tau_bench")).load_state_dict()
    for layer, j in report["transplanted"]["officebench"][:5]:
        name = f"model.layers.{layer}.mlp.down_proj.weight"
        assert torch.equal(model[name][:, j], donor[name][:, j])


def test_bf16_trace_sums_are_float32_and_close_to_float32_trace(perturbed_pool):
    from arm_ray.config import parse_config
    from arm_ray.pipeline import trace_jobs
    from arm_ray.prepare import prepare
    from arm_ray.tracing import Sources, Worker

    ctx = prepare(parse_config(tiny_config(perturbed_pool)))
    job = trace_jobs(ctx)[0]
    experts = {n: str(c.path) for n, c in ctx.experts.items()}
    sums = {dt: Worker(Sources(str(ctx.base.path), experts, dt, "cpu")).trace(job, ctx.packed).sums
            for dt in ("float32", "bfloat16")}
    assert sums["bfloat16"].dtype == np.float32
    assert not np.array_equal(sums["bfloat16"], sums["float32"])  # the model really ran in bf16
    np.testing.assert_allclose(sums["bfloat16"], sums["float32"], rtol=0.05, atol=1e-3)


# -- a fused gate_up MLP (Phi-3 layout) through tracing, selection and transplant --

def phi3_pool(root, tokenizer_dir):
    from transformers import AutoTokenizer, Phi3Config, Phi3ForCausalLM

    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    cfg = Phi3Config(vocab_size=len(tok), hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                     num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=2048,
                     pad_token_id=None, bos_token_id=None, eos_token_id=None)
    torch.manual_seed(0)
    base = Phi3ForCausalLM(cfg)
    paths = {}
    for i, name in enumerate(["base", "expert_a", "expert_b"]):
        if i:
            g = torch.Generator().manual_seed(i)
            with torch.no_grad():
                for p in base.parameters():
                    p.add_(0.05 * p.abs().mean() * torch.randn(p.shape, generator=g))
        paths[name] = root / name
        base.save_pretrained(paths[name])
        tok.save_pretrained(paths[name])
    return paths


def test_fused_gate_up_model_end_to_end(perturbed_pool, tmp_path):
    paths = phi3_pool(tmp_path, perturbed_pool / "tokenizer")
    assert "model.layers.0.mlp.gate_up_proj.weight" in open_checkpoint(str(paths["base"])).tensors
    cfg = tiny_config(perturbed_pool, base={"path": str(paths["base"])},
                      experts={"a": {"path": str(paths["expert_a"])}, "b": {"path": str(paths["expert_b"])}},
                      benchmarks={"tau_bench": {"expert": "a"}, "agentbench_os": {"expert": "b"}},
                      weak={"benchmarks": ["tau_bench", "agentbench_os"]})
    cfg["calibration"]["files"] = [f for f in cfg["calibration"]["files"] if "officebench" not in f["path"]]
    report = run_local(cfg, tmp_path / "run")
    check_against_recomputation(tmp_path / "run", report, cfg, ["tau_bench", "agentbench_os"])
    model = open_checkpoint(str(tmp_path / "run" / "model")).load_state_dict()
    backbone = open_checkpoint(str(tmp_path / "run" / "backbone")).load_state_dict()
    donors = {"tau_bench": open_checkpoint(str(paths["expert_a"])).load_state_dict(),
              "agentbench_os": open_checkpoint(str(paths["expert_b"])).load_state_dict()}
    d_ff = 96
    expected = {k: v.clone() for k, v in backbone.items()}
    for b, pairs in report["transplanted"].items():
        for layer, j in pairs:
            gu, down = f"model.layers.{layer}.mlp.gate_up_proj.weight", f"model.layers.{layer}.mlp.down_proj.weight"
            expected[gu][[j, d_ff + j]] = donors[b][gu][[j, d_ff + j]]  # gate row j and up row d_ff + j
            expected[down][:, j] = donors[b][down][:, j]
    assert any(report["transplanted"].values())
    for k in model:
        assert torch.equal(model[k], expected[k]), k
