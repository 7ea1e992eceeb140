import os
import shutil
from pathlib import Path

import pytest

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from arm_ray.toy.chat import TINY_SHAPE  # noqa: E402


@pytest.fixture(scope="session")
def perturbed_pool(tmp_path_factory) -> Path:
    """The quick pool in a tiny shape: random base, three perturbed experts, tokenizer, calibration; once a session."""
    from arm_ray.toy.perturbed import build_perturbed_pool

    return build_perturbed_pool(str(tmp_path_factory.mktemp("pool") / "pool"), seed=0, n_calibration=6,
                                shape=TINY_SHAPE)


@pytest.fixture(scope="session")
def long_pool(tmp_path_factory) -> Path:
    """The quick pool, tiny, with a 32k context: τ²'s prompts are ~10k tokens of the toy tokenizer."""
    from arm_ray.toy.perturbed import build_perturbed_pool

    return build_perturbed_pool(str(tmp_path_factory.mktemp("long") / "pool"), seed=0, n_calibration=6,
                                shape={**TINY_SHAPE, "max_position_embeddings": 32768})


@pytest.fixture(scope="session")
def talkative_model(long_pool, tmp_path_factory):
    """The tiny random model with its whitespace tokens silenced (zero embedding rows): it writes visible text."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(long_pool / "base")
    model = AutoModelForCausalLM.from_pretrained(long_pool / "base")
    blank = [i for i in range(len(tok)) if not tok.decode([i]).strip()]
    with torch.no_grad():
        model.get_input_embeddings().weight[blank] = 0.0
    out = tmp_path_factory.mktemp("talkative")
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def tokenizer(perturbed_pool):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(perturbed_pool / "tokenizer")


# The trained pools' last bits differ from machine to machine (training amplifies the CPU kernels' rounding), so
# a test must hold for any build: CI builds them again with another seed and reruns the tests marked `pool`.
POOL_SEED = int(os.environ.get("ARM_RAY_TEST_POOL_SEED", "0"))


def pytest_collection_modifyitems(items):
    """Mark every test that reads a trained pool `pool`: `pytest -m pool` reruns them on a rebuilt pool."""
    for item in items:
        if "trained_pool" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.pool)


@pytest.fixture(scope="session")
def trained_pool(tmp_path_factory) -> Path:
    """The trained pool, `tests` preset: the real build (oracle data, tokenizer, training, scoring), fast; seeded
    by ARM_RAY_TEST_POOL_SEED (default 0)."""
    from arm_ray.toy.trained import build_trained_pool

    return build_trained_pool(tmp_path_factory.mktemp("toy") / "pool", "tests", seed=POOL_SEED)


def tiny_config(pool: Path, **over) -> dict:
    cfg = {
        "name": "tiny",
        "base": {"path": str(pool / "base")},
        "experts": {"tau": {"path": str(pool / "expert_tau_bench")},
                    "office": {"path": str(pool / "expert_officebench")},
                    "os": {"path": str(pool / "expert_agentbench_os")}},
        "benchmarks": {"tau_bench": {"expert": "tau"}, "officebench": {"expert": "office"},
                       "agentbench_os": {"expert": "os"}},
        "calibration": {"files": [{"path": str(pool / "calibration" / f"{b}.jsonl")}
                                  for b in ("tau_bench", "officebench", "agentbench_os")],
                        "max_length": 1024},
        "operators": [{"name": "average", "method": "linear", "parameters": {"weight": 1.0}},
                      {"name": "ties", "method": "ties", "parameters": {"weight": 1.0, "density": 0.5}},
                      {"name": "dare_ties", "method": "dare_ties", "parameters": {"weight": 1.0, "density": 0.5}}],
        "k": 0.1,
        "weak": {"benchmarks": ["officebench", "agentbench_os"]},
        "save_backbone": True,
        "resources": {"tracers": 1, "tracer_num_cpus": 0.25, "coordinator_num_cpus": 0.1, "torch_threads": 1},
        "trace": {"max_tokens_per_batch": 1024},
    }
    cfg.update(over)
    return cfg


def copy_checkpoint(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def small_demo_config(pool: Path, sampling: dict) -> dict:
    """configs/demo.yaml on a trained pool, cut small: two operators, 2 dev and 2 test tasks, every benchmark weak."""
    import yaml

    text = (Path(__file__).parents[1] / "configs" / "demo.yaml").read_text()
    cfg = yaml.safe_load(text.replace("runs/_trained_pool", str(pool)))
    cfg.pop("prepare")
    cfg["operators"] = [op for op in cfg["operators"] if op["name"] in ("average", "task_arithmetic")]
    cfg["weak"] = {"threshold": -2.0}  # below any gap (gaps lie in [-1, 1]): every in-domain benchmark is weak
    cfg["evaluation"].update(dev_tasks=2, test_tasks=2, sampling={b: sampling for b in cfg["benchmarks"]})
    return cfg


def mean_rewards(rows: list[dict], split: str) -> dict[str, dict[str, float]]:
    """{model: {benchmark: mean reward}} over one split, counted here (not with arm_ray.evaluation)."""
    sums: dict = {}
    for r in rows:
        if r["split"] == split:
            total, n = sums.setdefault(r["model"], {}).get(r["benchmark"], (0.0, 0))
            sums[r["model"]][r["benchmark"]] = (total + r["reward"], n + 1)
    return {m: {b: t / n for b, (t, n) in by.items()} for m, by in sums.items()}


def check_png(path: Path, min_side: int = 300) -> None:
    """A plot a person can read: a real PNG of a readable size, with drawn content (not blank, not one colour)."""
    from PIL import Image

    with Image.open(path) as im:
        assert im.format == "PNG" and min(im.size) >= min_side, (path, im.size)
        rgb = im.convert("RGB").resize((200, 200))
        pixels = list(rgb.getdata())
    inked = sum(1 for p in pixels if sum(p) < 600) / len(pixels)  # not white or near white
    assert 0.01 < inked < 0.9 and len(set(pixels)) > 8, (path, inked)


def check_diagnosis_and_results(out: Path, report: dict) -> list[dict]:
    """What a run of `small_demo_config` must show: dev gaps from the dev rows, every test row, the table."""
    from arm_ray.rollout.results import read_eval

    rows = read_eval(out / "eval.parquet")
    dev = mean_rewards(rows, "dev")
    assert set(dev) == {"retail_expert", "office_expert", "shell_expert", "backbone"}
    experts = {"tau_bench": "retail_expert", "officebench": "office_expert", "agentbench_os": "shell_expert"}
    assert [w["benchmark"] for w in report["weak"]] == list(experts)
    for w in report["weak"]:
        assert w["source"] == "dev"
        assert w["gap"] == dev[experts[w["benchmark"]]][w["benchmark"]] - dev["backbone"][w["benchmark"]]
    assert report["dev_scores"] == dev
    test = [r for r in rows if r["split"] == "test"]
    models = {"base", "retail_expert", "office_expert", "shell_expert", "task_arithmetic", "average", "backbone",
              "arm"} - {report["selected"]}
    assert {r["model"] for r in test} == models
    assert len(test) == len(models) * 4 * 2  # 4 benchmarks (dbbench out-of-domain), 2 tasks each
    table = {row["label"]: row for row in report["evaluation"]["table"]}
    assert list(table)[0] == "base" and list(table)[4] == "BEST-of-3 (oracle)" and list(table)[-1] == "ARM"
    scores = mean_rewards(rows, "test")
    assert table["ARM"]["dbbench"] == pytest.approx(scores["arm"]["dbbench"])
    assert table["ARM"]["AVG"] == pytest.approx(sum(scores["arm"].values()) / len(scores["arm"]))
    assert table["ARM"]["WS"] == pytest.approx(min(scores["arm"][b] for b in experts))
    assert table["BEST-of-3 (oracle)"]["tau_bench"] == max(scores[e]["tau_bench"] for e in experts.values())
    ev = report["evaluation"]
    assert set(ev["intervals"]) == models and all(lo <= x <= hi for m in ev["intervals"].values()
                                                  for x, lo, hi in m.values())
    assert ev["intervals"]["arm"]["AVG"][0] == pytest.approx(table["ARM"]["AVG"])
    diff = ev["paired"]["difference"]
    assert set(diff) == {"tau_bench", "officebench", "agentbench_os", "dbbench", "AVG", "WS", "WS_suite"}
    # dev covers the in-domain suites only, so no worst suite is fixed over all four: WS gets conservative bounds
    assert diff["WS_suite"] is None and diff["WS"][1] <= diff["WS"][0] <= diff["WS"][2]
    assert diff["dbbench"][0] == pytest.approx(scores["arm"]["dbbench"] - scores["backbone"]["dbbench"])
    md = (out / "report.md").read_text()
    assert "## Dev rollouts (diagnosis)" in md and "## Results (test, 2 episodes per benchmark)" in md
    assert "| ARM |" in md and "### ARM − AOS-selected backbone, paired by task" in md and "**Finding.**" in md
    check_png(out / "results.png")
    assert not (out / ".work" / "candidates").exists()
    return rows


@pytest.fixture(scope="session")
def agentbench_dir() -> Path:
    """The official AgentBench v0.2 task files: ARM_RAY_AGENTBENCH_DIR, else ../shared/benchmarks/agentbench
    beside the checkout (here and in CI)."""
    default = Path(__file__).resolve().parents[2] / "shared" / "benchmarks" / "agentbench"
    path = Path(os.environ.get("ARM_RAY_AGENTBENCH_DIR", default))
    if not (path / "data").is_dir():
        pytest.skip(f"no AgentBench v0.2 data at {path} (set ARM_RAY_AGENTBENCH_DIR to a clone)")
    return path


def _shared(env: str, *parts: str) -> Path:
    return Path(os.environ.get(env, Path(__file__).resolve().parents[2].joinpath("shared", "benchmarks", *parts)))


@pytest.fixture(scope="session")
def officebench_dir() -> Path:
    """The official OfficeBench `tasks/` folder: ARM_RAY_OFFICEBENCH_DIR, else ../shared/benchmarks/officebench/tasks
    beside the checkout (here and in CI)."""
    path = _shared("ARM_RAY_OFFICEBENCH_DIR", "officebench", "tasks")
    if not path.is_dir():
        pytest.skip(f"no OfficeBench tasks at {path} (set ARM_RAY_OFFICEBENCH_DIR to a clone's tasks/)")
    return path


@pytest.fixture(scope="session")
def simia_dir() -> Path:
    """SIMIA's OfficeBench `tasks/` folder: ARM_RAY_OFFICEBENCH_SIMIA_DIR, else the copy in ../shared/benchmarks."""
    path = _shared("ARM_RAY_OFFICEBENCH_SIMIA_DIR", "officebench-simia", "OfficeBench", "tasks")
    if not path.is_dir():
        pytest.skip(f"no SIMIA OfficeBench tasks at {path} (set ARM_RAY_OFFICEBENCH_SIMIA_DIR)")
    return path


@pytest.fixture(scope="session")
def os_home() -> Path:
    """The AgentBench OS machine's built tree (`python -m arm_ray.benchmarks.rootfs build`, which scripts/setup.sh
    runs). Skipped where it is not built, except in CI, where setup.sh must have built it."""
    from arm_ray.benchmarks import rootfs
    from arm_ray.errors import ConfigError

    try:
        return rootfs.locate()
    except ConfigError as e:
        if os.environ.get("CI"):
            raise
        pytest.skip(str(e))
