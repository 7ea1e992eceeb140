"""The SmolLM2 pool: GGUF conversion (on a tiny Llama written as an F32 GGUF), the chat template, the builder's
cache and gate on its tiny preset, and a Llama pool through ARM's tracing and transplant."""

import json

import pytest
import torch

from arm_ray import checkpoints, pipeline
from arm_ray.config import parse_config
from arm_ray.devices import fast_dtype
from arm_ray.errors import CheckpointError, ConfigError
from arm_ray.experts.scoring import check_gate
from arm_ray.pretrained import smollm2
from arm_ray.roles.template import compile_chat_template
from arm_ray.tracing import LocalTracing
from tests.pretrained.tiny_gguf import write_tiny_llama_gguf


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory):
    path = tmp_path_factory.mktemp("gguf") / "tiny.gguf"
    return path, write_tiny_llama_gguf(path)


@pytest.fixture(scope="module")
def tiny_pool(tiny_gguf, tmp_path_factory):
    out = tmp_path_factory.mktemp("smol") / "pool"
    return smollm2.build_smollm2_pool(out, preset="tests", base=str(tiny_gguf[0]))


def test_gguf_weights_round_trip_exactly(tiny_gguf, tmp_path):
    path, state = tiny_gguf
    model, tok = checkpoints.load_gguf(path)
    got = model.state_dict()
    assert set(state) <= set(got) and set(got) - set(state) == {"lm_head.weight"}  # tied to the embedding
    for k, v in state.items():
        assert torch.equal(got[k], v), k
    assert got["lm_head.weight"].data_ptr() == got["model.embed_tokens.weight"].data_ptr()
    # and saved as a plain checkpoint (save_pretrained refuses the GGUF-marked model), read back the same
    checkpoints.save_model(model, tmp_path / "m", tok)
    assert "quantization_config" not in json.loads((tmp_path / "m" / "config.json").read_text())
    again = checkpoints.load_model(tmp_path / "m").state_dict()
    assert all(torch.equal(again[k], v) for k, v in state.items())
    assert tok.chat_template == smollm2.CHAT_TEMPLATE


def test_unreadable_gguf_is_a_clear_error(tmp_path):
    with pytest.raises(CheckpointError, match="no such GGUF file"):
        checkpoints.load_gguf(tmp_path / "missing.gguf")
    (tmp_path / "junk.gguf").write_bytes(b"not a gguf file at all")
    with pytest.raises(CheckpointError, match="junk.gguf: transformers cannot read"):
        checkpoints.load_gguf(tmp_path / "junk.gguf")


def test_the_base_is_found_in_the_installed_wheel():
    path = smollm2.base_gguf()
    assert path.name == "SmolLM2-135M-Instruct.Q4_1.gguf" and path.stat().st_size > 90_000_000


def _wheel_template() -> str:
    import gguf

    field = gguf.GGUFReader(str(smollm2.base_gguf())).fields["tokenizer.chat_template"]
    return field.contents()


def test_template_is_the_bases_own_without_tools_and_lists_tools_in_the_system_turn():
    ours, theirs = compile_chat_template(smollm2.CHAT_TEMPLATE), compile_chat_template(_wheel_template())
    chats = [[{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}],
             [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+2?"},
              {"role": "assistant", "content": "4"}, {"role": "tool", "content": "ok"}]]
    for msgs in chats:
        for gen in (False, True):
            assert ours.render(messages=msgs, add_generation_prompt=gen) == \
                theirs.render(messages=msgs, add_generation_prompt=gen)
    tool = {"type": "function", "function": {"name": "find_user_id", "parameters": {}}}
    text = ours.render(messages=chats[1], tools=[tool], add_generation_prompt=True)
    system = text.split("<|im_end|>")[0]
    assert system.startswith("<|im_start|>system\nBe brief.\n\nTools you can call") and "find_user_id" in system
    assert text.endswith("<|im_start|>assistant\n") and text.count("<|im_start|>") == 5


def test_tiny_build_scores_gates_and_is_cached(tiny_pool, tiny_gguf):
    names = ["base", "expert_retail", "expert_office", "expert_shell"]
    scores = json.loads((tiny_pool / "scores.json").read_text())
    assert list(scores) == names and all(set(v) == {"retail", "office", "shell", "sql"} for v in scores.values())
    gate = json.loads((tiny_pool / "gate.json").read_text())
    assert gate == {"passed": not check_gate(scores), "problems": check_gate(scores)}
    sizes = json.loads((tiny_pool / "task_vectors.json").read_text())
    assert set(sizes) == set(names[1:]) and all(0 < v["all"] < 1 and v["mlp"] > 0 for v in sizes.values())
    timings = json.loads((tiny_pool / "timings.json").read_text())
    # bf16 autocast only where this CPU computes bf16 (an AVX2 CPU emulates it, tens of times slower)
    assert json.loads((tiny_pool / "spec.json").read_text())["bf16"] == (fast_dtype("cpu") == "bfloat16")
    assert timings["total"] >= timings["expert_retail"] > 0 and timings["peak_rss_gib"] > 0
    for suite in ("retail", "office", "shell", "sql"):
        demos = [json.loads(x) for x in (tiny_pool / "data" / suite / "demos.jsonl").read_text().splitlines()]
        train = [json.loads(x) for x in (tiny_pool / "data" / suite / "train.jsonl").read_text().splitlines()]
        assert len(demos) == 1 and demos[0] not in train  # the demos are train episodes SFT does not see
        assert "Examples of solved tasks:" in train[0]["messages"][0]["content"]
    # an expert differs from the base; the base is the GGUF's weights, unchanged
    base = checkpoints.open_checkpoint(str(tiny_pool / "base")).load_state_dict()
    assert all(torch.equal(base[k], v) for k, v in tiny_gguf[1].items())
    assert "dequantized" in (tiny_pool / "base" / "README.md").read_text()  # the base's card says what it is
    expert = checkpoints.open_checkpoint(str(tiny_pool / "expert_shell")).load_state_dict()
    assert any(not torch.equal(base[k], expert[k]) for k in base)
    # cached: the same inputs do not rebuild; another input does
    stamp = (tiny_pool / "STAMP").stat().st_mtime_ns
    assert smollm2.build_smollm2_pool(tiny_pool, preset="tests", base=str(tiny_gguf[0])) == tiny_pool
    assert (tiny_pool / "STAMP").stat().st_mtime_ns == stamp


def test_builder_refuses_bad_input_before_work(tmp_path):
    with pytest.raises(ConfigError, match="unknown SmolLM2 pool preset 'huge'"):
        smollm2.build_smollm2_pool(tmp_path / "p", preset="huge")
    with pytest.raises(ConfigError, match="is not a file"):
        smollm2.build_smollm2_pool(tmp_path / "p", preset="tests", base=str(tmp_path / "none.gguf"))
    assert not (tmp_path / "p").exists()


def test_a_llama_pool_through_tracing_and_transplant(tiny_pool, tmp_path):
    """ARM on the tiny Llama pool (tied embeddings, grouped-query attention): traced, merged, and the output is
    the backbone with exactly the transplanted neurons' rows and columns taken from the donors."""
    suites = {"tau_bench": "retail", "officebench": "office", "agentbench_os": "shell"}
    cfg = {"name": "llama", "base": {"path": str(tiny_pool / "base"), "about": smollm2.ABOUT_BASE},
           "experts": {f"{s}_expert": {"path": str(tiny_pool / f"expert_{s}")} for s in suites.values()},
           "benchmarks": {b: {"expert": f"{s}_expert", "suite": s} for b, s in suites.items()},
           "calibration": {"files": [{"path": str(tiny_pool / "data" / s / "calibration.jsonl")}
                                     for s in suites.values()], "max_length": 2048},
           "operators": [{"name": "average", "method": "linear", "parameters": {"weight": 1.0}},
                         {"name": "ties", "method": "ties", "parameters": {"weight": 1.0, "density": 0.5}}],
           "k": 0.2, "weak": {"benchmarks": ["officebench", "agentbench_os"]}, "save_backbone": True,
           "resources": {"tracers": 1, "tracer_num_cpus": 0.25, "coordinator_num_cpus": 0.1, "torch_threads": 1},
           "trace": {"max_tokens_per_batch": 2048}}
    out = tmp_path / "run"
    report = pipeline.run(parse_config(cfg), out, lambda ctx: LocalTracing(ctx.sources("cpu")))
    assert report["selected"] in ("average", "ties")
    assert smollm2.ABOUT_BASE in (out / "model" / "README.md").read_text()  # the model card names the base's origin
    model = checkpoints.open_checkpoint(str(out / "model")).load_state_dict()
    backbone = checkpoints.open_checkpoint(str(out / "backbone")).load_state_dict()
    moved = {b: v for b, v in report["transplanted"].items() if v}
    assert moved, "k = 0.2 on two weak benchmarks should move some neurons"
    expected = {k: v.clone() for k, v in backbone.items()}
    for b, pairs in moved.items():
        donor = checkpoints.open_checkpoint(str(tiny_pool / f"expert_{suites[b]}")).load_state_dict()
        for layer, j in pairs:
            p = f"model.layers.{layer}.mlp."
            for name in ("gate_proj", "up_proj"):
                expected[p + f"{name}.weight"][j] = donor[p + f"{name}.weight"][j]
            expected[p + "down_proj.weight"][:, j] = donor[p + "down_proj.weight"][:, j]
    assert set(model) == set(backbone) and "lm_head.weight" not in model  # still tied
    assert all(torch.equal(model[k], expected[k]) for k in model)
