"""The in-process rollout backend: the oracle solves everything; transformers is greedy per-suite generation."""

import json

from arm_ray.rollout.backend import LocalRollouts
from arm_ray.rollout.run import SuiteRun

RUNS = [SuiteRun("tau_bench", "retail", "test", 2), SuiteRun("agentbench_os", "shell", "test", 2)]


def test_oracle_backend_scores_every_task(trained_pool):
    done = []
    rows = LocalRollouts("oracle").evaluate({"x": str(trained_pool / "base"), "y": str(trained_pool / "base")},
                                            RUNS, {}, on_done=done.append)
    assert len(rows) == 8 and all(r["reward"] == 1.0 for r in rows)
    assert [len(d) for d in done] == [4, 4] and {r["benchmark"] for r in rows} == {"tau_bench", "agentbench_os"}


def test_transformers_backend_uses_each_benchmarks_token_limit(trained_pool):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from arm_ray.rollout.agent import Turn
    from arm_ray.rollout.policies import TransformersPolicy

    path = trained_pool / "expert_retail"
    rows = LocalRollouts("transformers", threads=1).evaluate(
        {"m": str(path)}, RUNS, {"tau_bench": {"max_new_tokens": 5}, "agentbench_os": {"max_new_tokens": 12}})
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path)
    for r in rows:
        t = json.loads(r["trajectory"])
        first = next(i for i, m in enumerate(t["messages"]) if m["role"] == "assistant")
        limit = 5 if r["benchmark"] == "tau_bench" else 12
        direct = TransformersPolicy(model, tok, max_new_tokens=limit)([Turn(None, t["messages"][:first],
                                                                            t["tools"])])[0]
        assert t["messages"][first]["content"] == direct
        assert len(tok(direct, add_special_tokens=False)["input_ids"]) <= limit
