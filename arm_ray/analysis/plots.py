"""One PNG per finding of `arm_ray.analysis_pipeline`, each with labelled axes (units), a legend and the counts."""

from __future__ import annotations

from pathlib import Path

import numpy as np

PCT = 100.0


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> str:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    _plt().close(fig)
    return path.name


def _err(ci: list[float]) -> list[list[float]]:
    """matplotlib's [[below], [above]] from [point, low, high] (in percent)."""
    return [[PCT * (ci[0] - ci[1])], [PCT * (ci[2] - ci[0])]]


def aos_vs_quality(f: dict, path: Path) -> str:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7.5, 5))
    xs = [p["mean_aos"] for p in f["points"]]
    ys = [PCT * p["avg"][0] for p in f["points"]]
    span_x, span_y = (max(xs) - min(xs)) or 1.0, (max(ys) - min(ys)) or 1.0
    placed: list[tuple[float, float]] = []
    for p, x, y in sorted(zip(f["points"], xs, ys), key=lambda t: (-t[2], t[1])):
        ax.errorbar(x, y, yerr=_err(p["avg"]), fmt="o", color="tab:blue", capsize=3)
        near = sum(abs(x - px) < 0.06 * span_x and abs(y - py) < 0.05 * span_y for px, py in placed)
        placed.append((x, y))  # labels of close points are stacked downwards, not drawn over each other
        ax.annotate(p["name"], (x, y), textcoords="offset points", xytext=(6, 4 - 11 * near), fontsize=8)
    r, rho = f["pearson"], f["spearman"]
    ax.set_title(f"AOS vs test AVG over {f['n_points']} candidates\nPearson {r[0]:.2f} [{r[1]:.2f}, {r[2]:.2f}], "
                 f"Spearman {rho[0]:.2f} [{rho[1]:.2f}, {rho[2]:.2f}] (paper: 0.840 / 0.986)", fontsize=10)
    ax.set_xlabel("mean Activation-Overlap Score over in-domain benchmarks (Jaccard)")
    ax.set_ylabel(f"test AVG over {len(f['benchmarks'])} benchmarks (%), 95 % CI")
    ax.grid(alpha=0.3)
    return _save(fig, path)


def role_overlap(f: dict, path: Path) -> str:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    layers = np.arange(len(f["role"]["overlap_rate_per_layer"]))
    for key, label, style in (("response", "experts, role-agnostic (response)", "o--"),
                              ("role", "experts, role-conditioned", "o-"),
                              ("backbone_response", "backbone, role-agnostic", "s--"),
                              ("backbone_role", "backbone, role-conditioned", "s-")):
        if f.get(key):
            ax.plot(layers, PCT * np.array(f[key]["overlap_rate_per_layer"]), style,
                    label=f"{label}: {PCT * f[key]['overlap_rate']:.0f} % overall "
                          f"(Jaccard {PCT * f[key]['jaccard']:.0f} %)")
    ax.set_xlabel("decoder layer")
    ax.set_ylabel("overlap rate: salient neurons in ≥ 2 sets (%)")
    n = f["role"]
    ax.set_title(f"Cross-benchmark overlap of top-{f['k']:g} sets ({n['n_sets']} experts' sets, "
                 f"{n['set_size']} neurons per set)\npaper: 61 % (response) -> 41 % (role)", fontsize=10)
    ax.set_xticks(layers)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def protection_sweep(f: dict, path: Path) -> str:
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2), sharex=True)
    for ax, stat in zip(axes, ("AVG", "WS")):
        for protect, label, color in ((True, "with protection (ARM)", "tab:blue"),
                                      (False, "without protection", "tab:red")):
            pts = [p for p in f["points"] if p["protect"] == protect]
            ks = [p["k"] for p in pts]
            mid = [PCT * p[stat][0] for p in pts]
            ax.plot(ks, mid, "o-", color=color, label=label)
            ax.fill_between(ks, [PCT * p[stat][1] for p in pts], [PCT * p[stat][2] for p in pts], color=color,
                            alpha=0.15)
        ax.set_xscale("log")
        ax.set_xticks(f["ks"])
        ax.set_xticklabels([f"{k:g}" for k in f["ks"]])
        ax.set_xticks([], minor=True)  # a log axis labels its minor ticks too ("6x10^-2" beside 0.05)
        ax.set_xlabel("k (top fraction of MLP neurons per layer)")
        ax.set_ylabel(f"test {stat} over in-domain suites (%)")
        ax.grid(alpha=0.3)
    tasks = f["points"][0]["tasks"]
    axes[0].legend(fontsize=8)
    fig.suptitle(f"Protection and k: {len(tasks)} in-domain suites x {min(tasks.values())} test tasks, "
                 "95 % CI bands", fontsize=10)
    return _save(fig, path)


def arm_vs_backbone(f: dict, path: Path) -> str:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8, 4.2))
    labels, vals, colors = [], [], []
    for part, color in (("in_domain", "tab:blue"), ("out_of_domain", "tab:gray")):
        if not f.get(part):
            continue
        diff = f[part]["difference"]
        for b in f[part]["benchmarks"]:
            labels.append(b + (" (weak)" if b in f.get("weak", []) else ""))
            vals.append(diff[b])
            colors.append(color)
        on = diff.get("WS_suite")
        labels.append(f"WS {part.replace('_', '-')}" + (f"\n(on {on})" if on else "\n(bounds)"))
        vals.append(diff["WS"])
        colors.append("black")
    x = np.arange(len(vals))
    ax.bar(x, [PCT * v[0] for v in vals], color=colors, alpha=0.7)
    ax.errorbar(x, [PCT * v[0] for v in vals], yerr=np.hstack([_err(v) for v in vals]), fmt="none", color="k",
                capsize=4)
    ax.axhline(0, color="k", lw=0.8)
    ax.set_xticks(x)
    ax.set_xticklabels(labels, rotation=20, ha="right", fontsize=8)
    ax.set_ylabel("ARM - AOS-selected backbone (points), 95 % CI")
    ind = f["in_domain"]
    ax.set_title(f"ARM vs its backbone, paired by task: in-domain WS {PCT * ind['backbone']['WS'][0]:.1f} -> "
                 f"{PCT * ind['arm']['WS'][0]:.1f} (paper 19.1 -> 28.5)", fontsize=10)
    ax.grid(alpha=0.3, axis="y")
    return _save(fig, path)


def role_agnostic(f: dict, path: Path) -> str:
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2), gridspec_kw={"width_ratios": [1.2, 1]})
    ax = axes[0]
    models = [("role_arm", "ARM (role-conditioned)", "tab:blue"), ("arm", "ARM (role-agnostic)", "tab:orange")]
    if "backbone" in f:
        models.append(("backbone", f"role-agnostic backbone ({f['selected']})", "tab:gray"))
    width = 0.8 / len(models)
    for i, (key, label, color) in enumerate(models):
        for j, stat in enumerate(("AVG", "WS")):
            v = f[key][stat]
            ax.bar(j + i * width, PCT * v[0], width, color=color, label=label if j == 0 else None)
            ax.errorbar(j + i * width, PCT * v[0], yerr=_err(v), fmt="none", color="k", capsize=3)
    ax.set_xticks([width * (len(models) - 1) / 2, 1 + width * (len(models) - 1) / 2])
    ax.set_xticklabels([f"AVG ({len(f['benchmarks'])} suites)", "WS"])
    ax.set_ylabel("test score (%), 95 % CI")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, axis="y")
    ax = axes[1]
    bench = list(f["sets"])
    x = np.arange(len(bench))
    ax.bar(x - 0.2, [f["sets"][b]["b"] for b in bench], 0.4, label="role-conditioned T_b", color="tab:blue")
    ax.bar(x + 0.2, [f["sets"][b]["a"] for b in bench], 0.4, label="role-agnostic T_b", color="tab:orange")
    for i, b in enumerate(bench):
        ax.annotate(f"J={f['sets'][b]['jaccard']:.2f}", (i, max(f["sets"][b]["a"], f["sets"][b]["b"])),
                    ha="center", va="bottom", fontsize=8)
    ax.set_xticks(x)
    ax.set_xticklabels(bench, fontsize=8)
    ax.set_ylabel("neurons transplanted")
    ax.legend(fontsize=8)
    fig.suptitle(f"Role-agnostic ablation: backbone {f['selected']} (role-conditioned: {f['run_selected']})",
                 fontsize=10)
    return _save(fig, path)


def calibration_size(f: dict, path: Path) -> str:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    sizes = f["sizes"]
    for key, label, color in (("expert_jaccard", "experts' top-k sets", "tab:blue"),
                              ("candidate_jaccard", "candidates' top-k sets", "tab:green"),
                              ("transplant_jaccard", "transplant sets T_b", "tab:red")):
        if any(p[key] is None for p in f["points"]):
            continue
        per = [[p[key] for p in f["points"] if p["n"] == n] for n in sizes]
        ax.errorbar(sizes, [np.mean(v) for v in per],
                    yerr=[[np.mean(v) - min(v) for v in per], [max(v) - np.mean(v) for v in per]], fmt="o-",
                    color=color, capsize=3, label=label)
    for n in sizes:
        changed = sum(not p["same_choice"] for p in f["points"] if p["n"] == n)
        ax.annotate(f"choice changed\n{changed}/{f['seeds']} seeds", (n, 0.02), ha="center", fontsize=7)
    ax.set_xscale("log", base=2)
    ax.set_xticks(sizes)
    ax.set_xticklabels([str(n) for n in sizes])
    ax.set_xticks([], minor=True)
    ax.set_ylim(0, 1.05)
    ax.set_xlabel(f"calibration trajectories per benchmark (full set: {min(f['available'].values())})")
    ax.set_ylabel("Jaccard with the full set's\n(mean, bars: min-max over seeds)")
    ax.set_title(f"How much calibration data is enough? {f['seeds']} seeds per size", fontsize=10)
    ax.legend(fontsize=8, loc="center right")
    ax.grid(alpha=0.3)
    return _save(fig, path)


PLOTS = {"aos_vs_quality": aos_vs_quality, "role_overlap": role_overlap, "protection_sweep": protection_sweep,
         "arm_vs_backbone": arm_vs_backbone, "role_agnostic": role_agnostic, "calibration_size": calibration_size}


def write_all(out: Path, state: dict) -> dict[str, str]:
    """{finding: PNG file name} for every finding in `state`."""
    return {name: PLOTS[name](f, out / f"{name}.png") for name, f in state["findings"].items()
            if name in PLOTS and not (name == "role_overlap" and f["role"] is None)}  # one expert: nothing to draw
