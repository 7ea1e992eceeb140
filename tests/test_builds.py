import yaml

from arm_ray.builds import build_config, headline, summary_md
from arm_ray.config import RunConfig


def test_every_pool_path_moves_to_the_builds_directory_and_the_config_still_loads():
    cfg = yaml.safe_load(open("configs/smollm2.yaml"))
    one = build_config(cfg, 2, full=False)
    text = yaml.safe_dump(one)
    assert "runs/_smollm2_pool/" not in text and "runs/_smollm2_pool\n" not in text
    assert one["base"]["path"] == "runs/_smollm2_pool_s2/base"
    assert one["benchmarks"]["dbbench"]["options"]["demos"] == "runs/_smollm2_pool_s2/data/sql/demos.jsonl"
    assert one["prepare"]["args"] == {"out": "runs/_smollm2_pool_s2", "preset": "smollm2", "seed": 2}
    assert one["seed"] == 2 and one["name"] == "smollm2_s2"
    assert "candidates" not in one["evaluation"]["models"] and "extra_roles" not in one["calibration"]
    assert cfg["base"]["path"] == "runs/_smollm2_pool/base"  # the input is left as it was
    full = build_config(cfg, 0, full=True)
    assert "candidates" in full["evaluation"]["models"] and full["calibration"]["extra_roles"] == ["response"]
    RunConfig.model_validate(one)
    # a prefix that is not the directory itself stays
    cfg["experts"]["retail_expert"]["path"] = "runs/_smollm2_pool_old/expert_retail"
    assert build_config(cfg, 1, True)["experts"]["retail_expert"]["path"] == "runs/_smollm2_pool_old/expert_retail"


def _report(selected, arm, backbone, ta, diff):
    bench = ["tau_bench", "officebench", "dbbench"]

    def row(model, avg, **own):
        return {"label": model, "model": model, **{b: own.get(b, avg) for b in bench}, "AVG": avg}

    table = [row("base", 0.1), row("retail_expert", 0.3, tau_bench=0.8), row("office_expert", 0.2, officebench=0.6),
             row("BEST-of-N", 0.7), row("task_arithmetic", ta), row("backbone", backbone),
             row("backbone", backbone), row("arm", arm)]
    return {"selected": selected, "evaluation": {"table": table, "benchmarks": bench,
                                                 "paired": {"difference": {"AVG": diff}}}}


def test_headline_and_summary_state_each_build_and_the_spread():
    cfg = {"benchmarks": {"tau_bench": {"expert": "retail_expert"}, "officebench": {"expert": "office_expert"},
                          "dbbench": {}}, "experts": {"retail_expert": {}, "office_expert": {}}}
    a = headline(_report("average", 0.30, 0.25, 0.40, [0.05, 0.01, 0.09]), cfg)
    assert a["experts_own"] == {"retail_expert": 0.8, "office_expert": 0.6}
    assert a["best_merge"] == {"name": "task_arithmetic", "AVG": 0.40}  # the best oracle row is not a merge
    b = headline(_report("ram", 0.20, 0.22, 0.10, [-0.02, -0.06, 0.02]), cfg)
    assert b["best_merge"] == {"name": "ram", "AVG": 0.22}
    md = summary_md("x", {0: a, 1: b})
    assert "| seed 0 | average |" in md and "+5.0 [+1.0, +9.0]" in md
    assert "| mean [min, max] | | 10.0 [10.0, 10.0] |" in md
    assert "25.0 [20.0, 30.0]" in md  # ARM AVG over the two builds
    assert "+1.5 [-2.0, +5.0]" in md  # ARM - backbone: mean [min, max] of the builds' estimates
