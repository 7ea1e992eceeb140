"""What every expert pool's build shares, toy or pretrained: oracle episodes to train on, scores on each suite's
test split, task-vector sizes, the build gate and the table a person reads.

    check_gate(scores)   each expert >= 0.5 on its suite and >= base + 0.2 there; the base above 0 on every suite
"""

from __future__ import annotations

from pathlib import Path

from arm_ray import checkpoints
from arm_ray.rollout.agent import run_episodes, run_mixed, training_record
from arm_ray.rollout.policies import OraclePolicy
from arm_ray.suites import get_suite
from arm_ray.world import IN_DOMAIN, OFFLINE_SUITES


def oracle_records(suite_name: str, split: str, n: int, options: dict | None = None) -> list[dict]:
    """`n` oracle episodes of a split as training records; `options`: the suite's (e.g. its demos)."""
    suite = get_suite(suite_name, options=options)
    eps = run_episodes(suite, suite.tasks(split, n), OraclePolicy(suite), split)
    bad = [e.task_id for e in eps if e.reward < 1]
    if bad:  # the oracle solves every task by construction; anything else is a bug in the suite
        raise RuntimeError(f"{suite_name}: the oracle failed {bad[:3]}")
    return [training_record(e, suite.parser) for e in eps]


def save_model(model, tokenizer, path: Path) -> None:
    from transformers import GenerationConfig

    model.generation_config = GenerationConfig(do_sample=False, eos_token_id=model.config.eos_token_id,
                                               pad_token_id=model.config.pad_token_id)
    checkpoints.save_model(model, path, tokenizer)


def progress_bar(total: int, desc: str):
    """A progress bar, and the `progress(step, loss)` callback `experts.sft.train` reports to."""
    from tqdm.auto import tqdm

    bar = tqdm(total=total, desc=desc, leave=True)

    def step(_i: int, loss: float) -> None:
        bar.set_postfix_str(f"loss {loss:.3g}", refresh=False)
        bar.update(1)

    return bar, step


def evaluate(model, tokenizer, suites, n_test: int, max_new_tokens: int = 160, batch_size: int = 40,
             desc: str | None = None) -> dict[str, float]:
    """Greedy transformers generation on each suite's first `n_test` test tasks: {suite: mean reward}."""
    from arm_ray.rollout.policies import TransformersPolicy

    policy = TransformersPolicy(model, tokenizer, max_new_tokens=max_new_tokens, batch_size=batch_size)
    return score_suites(policy, {name: get_suite(name) for name in suites}, n_test, desc)


def score_suites(policy, suites: dict, n_test: int, desc: str | None = None) -> dict[str, float]:
    """Any policy (transformers, vLLM) on each suite's first `n_test` test tasks, all suites' episodes advanced
    together (one engine batch): {suite name: mean reward}."""
    from tqdm.auto import tqdm

    jobs = [(suite, task, "test") for suite in suites.values() for task in suite.tasks("test", n_test)]
    bar = tqdm(total=len(jobs), desc=desc, leave=False) if desc else None
    eps = run_mixed(jobs, policy, bar.update if bar else None)
    if bar:
        bar.close()
    return {name: sum(e.reward for e in eps if e.suite == suite.name) / n_test for name, suite in suites.items()}


def task_vector_size(base: dict, expert: dict) -> dict[str, float]:
    """||theta_expert - theta_base|| / ||theta_base||, over every weight and over the MLPs' only."""
    out = {}
    for part, keep in (("all", lambda n: True), ("mlp", lambda n: ".mlp." in n)):
        names = [n for n in base if keep(n) and base[n].is_floating_point()]
        num = sum(float(((expert[n].double() - base[n].double()) ** 2).sum()) for n in names)
        den = sum(float((base[n].double() ** 2).sum()) for n in names)
        out[part] = (num / den) ** 0.5
    return out


def check_gate(scores: dict[str, dict[str, float]], min_score: float = 0.5, margin: float = 0.2) -> list[str]:
    """Where the pool's own scores miss the build gate (empty: it passes): each expert >= `min_score` on its
    suite and `margin` above the base there, and the base above 0 on every suite (else retention there cannot be
    measured). The merge gate is `toy.gate`, on an ARM run."""
    problems = []
    for suite in IN_DOMAIN:
        expert = f"expert_{suite}"
        mine, base = scores[expert][suite], scores["base"][suite]
        if mine < min_score:
            problems.append(f"{expert} scores {mine:.2f} on {suite} (< {min_score})")
        if mine - base < margin:
            problems.append(f"{expert} beats the base on {suite} by {mine - base:.2f} (< {margin})")
    problems += [f"base scores 0 on {s}" for s in OFFLINE_SUITES if s in scores["base"] and scores["base"][s] <= 0]
    return problems


def score_table(scores: dict[str, dict[str, float]], sizes: dict[str, dict[str, float]] | None = None) -> str:
    suites = list(OFFLINE_SUITES)
    head = "| model | " + " | ".join(suites) + (" | task vector / base (all, MLP) |" if sizes else " |")
    lines = [head, "|---|" + "---|" * (len(suites) + bool(sizes))]
    for model, row in scores.items():
        cells = [f"{row[s]:.2f}" for s in suites]
        if sizes:
            v = sizes.get(model)
            cells.append(f"{v['all']:.3f}, {v['mlp']:.3f}" if v else "—")
        lines.append(f"| {model} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
