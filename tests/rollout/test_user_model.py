"""The models environments talk to, served on the rollout side: vLLM in the process beside the agent's engine,
or greedy transformers; both give the same greedy reply, and a suite gets only a `generate` callable."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from arm_ray.rollout.user_model import UserModel, serve_users
from arm_ray.world.base import Suite

ROOT = Path(__file__).parents[2]
MESSAGES = [{"role": "system", "content": "You are a customer."}, {"role": "user", "content": "Hi! How can I help?"}]


def spec(path, backend):
    return {"path": str(path), "backend": backend, "temperature": 0.0, "top_p": 1.0, "max_new_tokens": 8,
            "engine": {"dtype": "float32", "max_model_len": 4096, "cpu_kv_cache_gb": 1}}


class AsksForAUser(Suite):
    name = "asks"

    def __init__(self, model_spec):
        self.model_spec, self.generate = model_spec, None

    def user_model(self):
        return self.model_spec

    def serve_user(self, generate):
        self.generate = generate


def test_serve_users_hands_each_asking_suite_a_generate_callable(talkative_model):
    asks, plain = AsksForAUser(spec(talkative_model, "transformers")), AsksForAUser(None)
    with serve_users([asks, plain]) as served:
        assert len(served) == 1 and plain.generate is None
        first = asks.generate(MESSAGES, "k")
        assert first and asks.generate(MESSAGES, "k") == first  # greedy: the same reply twice
    assert served[0].policy is None  # shut down with the block


@pytest.mark.slow
def test_a_vllm_user_model_replies_as_greedy_transformers_does(talkative_model):
    """backend vllm: an engine in this process (a subprocess here, so vLLM's settings stay out of the tests')."""
    code = ("import json, sys; from arm_ray.rollout.user_model import UserModel; "
            "m = UserModel(json.loads(sys.argv[1])); msgs = json.loads(sys.argv[2]); "
            "print(json.dumps([m.reply(msgs, 'a'), m.reply(msgs, 'b'), m.engine is not None])); m.shutdown()")
    done = subprocess.run([sys.executable, "-c", code, json.dumps(spec(talkative_model, "vllm")),
                           json.dumps(MESSAGES)], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    first, second, on_vllm = json.loads(done.stdout.strip().splitlines()[-1])
    assert on_vllm and first == second
    assert first == UserModel(spec(talkative_model, "transformers")).reply(MESSAGES, "a")


@pytest.mark.slow
def test_vllm_user_turns_of_several_episodes_are_decoded_together_with_the_same_replies(talkative_model):
    """Environment threads asking at once share the engine's batch; each reply is the one it gets alone."""
    code = ("import json, sys; from concurrent.futures import ThreadPoolExecutor; "
            "from arm_ray.rollout.user_model import UserModel; "
            "m = UserModel(json.loads(sys.argv[1])); asks = json.loads(sys.argv[2]); "
            "alone = [m.reply(a, str(i)) for i, a in enumerate(asks)]; peak_alone = m.peak_batch; "
            "together = list(ThreadPoolExecutor(len(asks)).map(lambda ia: m.reply(ia[1], str(ia[0])), "
            "enumerate(asks))); "
            "print(json.dumps([alone, together, peak_alone, m.peak_batch])); m.shutdown()")
    asks = [[MESSAGES[0], {"role": "user", "content": f"Order #{n}: where is it?"}] for n in range(6)]
    done = subprocess.run([sys.executable, "-c", code, json.dumps(spec(talkative_model, "vllm")),
                           json.dumps(asks)], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    alone, together, peak_alone, peak = json.loads(done.stdout.strip().splitlines()[-1])
    assert together == alone
    assert peak_alone == 1 and peak > 1
