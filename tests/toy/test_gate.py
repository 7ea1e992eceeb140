"""The merge-friendly pool's gate on hand-made score tables."""

import pytest

from arm_ray.toy import gate

DONORS = {"a": "ea", "b": "eb"}


def tables(**over):
    test = {"base": {"a": 0.2, "b": 0.1, "sql": 0.3}, "ea": {"a": 0.8, "b": 0.1, "sql": 0.2},
            "eb": {"a": 0.2, "b": 0.5, "sql": 0.1},
            "avg": {"a": 0.4, "b": 0.25, "sql": 0.2},  # retention (0.4/0.8 + 0.25/0.5) / 2 = 0.5
            "ta": {"a": 0.2, "b": 0.2, "sql": 0.2},  # (0.25 + 0.4) / 2 = 0.325
            "ties": {"a": 0.24, "b": 0.15, "sql": 0.2},  # (0.3 + 0.3) / 2 = 0.3
            "dare": {"a": 0.0, "b": 0.1, "sql": 0.0}}  # (0 + 0.2) / 2 = 0.1
    dev = {"ea": {"a": 0.7}, "eb": {"b": 0.6}, "backbone": {"a": 0.65, "b": 0.45}}  # gaps 0.05, 0.15
    for k, v in over.items():
        (dev if k == "dev" else test)[k if k != "dev" else "backbone"] = v
    return test, dev


def run(test, dev):
    return {c.name: c for c in gate.check(test, dev, DONORS, ["avg", "ta", "ties", "dare"], "backbone", ["sql"])}


def test_retention_by_hand():
    test, _ = tables()
    assert gate.retention(test, "avg", DONORS) == pytest.approx(0.5)
    assert gate.retention(test, "ta", DONORS) == pytest.approx(0.325)
    assert gate.retention(test, "dare", DONORS) == pytest.approx(0.1)
    zero = {"ea": {"a": 0.0}, "eb": {"b": 0.0}, "c": {"a": 0.1, "b": 0.1}}
    with pytest.raises(ValueError, match="retention is undefined"):
        gate.retention(zero, "c", DONORS)


def test_a_pool_that_passes():
    test, dev = tables()
    checks = run(test, dev)
    assert all(c.passed for c in checks.values()), gate.table(list(checks.values()))
    assert checks["best retention"].measured == "0.50 (avg)"
    assert checks["operators with retention >= 0.3"].measured.startswith("3 of 4")
    assert checks["backbone trails a donor on dev"].measured == "a +0.05; b +0.15"


def test_each_criterion_fails_alone():
    test, dev = tables()
    test["eb"]["b"] = 0.29  # 0.19 above the base: under the 0.2 margin
    assert [n for n, c in run(test, dev).items() if not c.passed] == ["eb on b"]
    test, dev = tables(ties={"a": 0.2, "b": 0.1, "sql": 0.2})  # retention 0.225: only two operators >= 0.3
    assert [n for n, c in run(test, dev).items() if not c.passed] == ["operators with retention >= 0.3"]
    test, dev = tables(base={"a": 0.2, "b": 0.1, "sql": 0.0})
    assert [n for n, c in run(test, dev).items() if not c.passed] == ["base on sql (out of domain)"]
    test, dev = tables(dev={"a": 0.65, "b": 0.55})  # gaps 0.05 and 0.05
    assert [n for n, c in run(test, dev).items() if not c.passed] == ["backbone trails a donor on dev"]


def test_from_a_run_report():
    test, dev = tables()
    summary = {m: {b: {"score": v} for b, v in row.items()} for m, row in test.items() if m != "ties"}
    summary["backbone"] = {b: {"score": v} for b, v in test["ties"].items()}  # ties was selected
    report = {"benchmarks": ["a", "b"], "experts": {"a": {"name": "ea"}, "b": {"name": "eb"}}, "selected": "ties",
              "candidates": [{"name": n} for n in ("avg", "ta", "ties", "dare")], "dev_scores": dev,
              "evaluation": {"summary": summary, "benchmarks": ["a", "b", "sql"]}}
    checks = {c.name: c for c in gate.from_report(report)}
    assert all(c.passed for c in checks.values())
    assert "ties 0.30" in checks["operators with retention >= 0.3"].measured
