"""analysis.md: each finding in one sentence in the paper's terms, the paper's figure beside ours, then details."""

from __future__ import annotations

PAPER_R, PAPER_RHO = 0.840, 0.986  # the paper's Figure 3 (Qwen3-8B pool)


def pct(v: float) -> str:
    return f"{100 * v:.1f}"


def ci(v: list[float], points: bool = True, sign: bool = False) -> str:
    """[estimate, low, high] as "12.3 [10.1, 14.5]" (in percent or points when `points`)."""
    f = (lambda x: f"{100 * x:+.1f}") if sign else (lambda x: f"{100 * x:.1f}") if points else (lambda x: f"{x:.2f}")
    return f"{f(v[0])} [{f(v[1])}, {f(v[2])}]"


def _supported(v: list[float], sign: int = 1) -> bool:
    """The interval lies wholly on the side `sign` of zero."""
    return v[1] > 0 if sign > 0 else v[2] < 0


def sentences(s: dict) -> list[tuple[str, str, str, str]]:
    """(finding, paper's figure, ours with counts, one-sentence verdict) per finding measured."""
    f, out = s["findings"], []
    if "aos_vs_quality" in f:
        a = f["aos_vs_quality"]
        r, rho = a["pearson"], a["spearman"]
        tasks = sum(a["tasks"].values())
        inside = all(v[1] <= paper <= v[2] for v, paper in ((r, PAPER_R), (rho, PAPER_RHO)))
        agree = (f"agrees with the paper's {PAPER_R:.3f} / {PAPER_RHO:.3f} (both inside our 95 % intervals)" if inside
                 else f"is positive but outside the paper's {PAPER_R:.3f} / {PAPER_RHO:.3f}"
                 if _supported(r) and _supported(rho) else
                 f"does not confirm the paper's {PAPER_R:.3f} / {PAPER_RHO:.3f}")
        out.append(("1. AOS predicts quality",
                    f"Pearson {PAPER_R:.3f}, Spearman {PAPER_RHO:.3f} (Qwen3-8B pool, Fig. 3)",
                    f"Pearson {ci(r, False)}, Spearman {ci(rho, False)}; {a['n_points']} candidates, "
                    f"{tasks} test tasks each",
                    f"On our pool AOS {'correlates positively' if r[0] > 0 else 'does not correlate positively'} "
                    f"with test AVG (r = {r[0]:.2f}, rho = {rho[0]:.2f} over {a['n_points']} candidates), which "
                    f"{agree}; the highest-AOS "
                    f"candidate ({a['highest_aos']}) ranks {a['highest_aos_avg_rank']} of {a['n_points']} by AVG "
                    f"(best: {a['best_avg']})."))
    if "role_overlap" in f and f["role_overlap"]["role"] is not None:
        o = f["role_overlap"]
        role, resp = o["role"]["overlap_rate"], o["response"]["overlap_rate"]
        out.append(("2. Role tracing separates benchmarks", "overlap rate 61 % (response) -> 41 % (role)",
                    f"overlap rate {pct(resp)} % -> {pct(role)} %; mean pairwise Jaccard "
                    f"{pct(o['response']['jaccard'])} % -> {pct(o['role']['jaccard'])} %; {o['role']['n_sets']} "
                    f"experts' sets of {o['role']['set_size']} neurons",
                    f"Role-conditioned tracing {'lowers' if role < resp else 'does not lower'} the share of the "
                    f"experts' top-{o['k']:g} salient neurons that lie in two or more benchmarks' sets from "
                    f"{pct(resp)} % to {pct(role)} % (paper 61 % -> 41 %, which gives no formula; ours: neurons in "
                    "≥ 2 sets / neurons in any set)."))
    if "protection_sweep" in f:
        p = f["protection_sweep"]
        ks = p["ks"]
        pts = {(q["k"], q["protect"]): q for q in p["points"]}
        # how far each curve falls from its best k to the largest k (the paper: less with protection)
        drop = {pr: max(pts[k, pr]["AVG"][0] for k in ks) - pts[ks[-1], pr]["AVG"][0] for pr in (True, False)}
        better = [k for k in ks if _supported(p["protected_minus_unprotected"][f"{k:g}"]["AVG"])]
        worse = [k for k in ks if _supported(p["protected_minus_unprotected"][f"{k:g}"]["AVG"], -1)]
        kr = s["k"] if (s["k"], True) in pts else ks[-1]
        removed = pts[kr, False]["moved"] - pts[kr, True]["moved"]
        tasks = p["points"][0]["tasks"]
        # a verdict from intervals only: flatter means protected measurably above unprotected at the largest k
        at_top = p["protected_minus_unprotected"][f"{ks[-1]:g}"]["AVG"]
        flatter = _supported(at_top)
        out.append(("3. Protection flattens the k-curve", "protected consistently higher, flatter as k grows",
                    f"AVG fall from best k to k={ks[-1]:g}: protected {100 * drop[True]:.1f}, unprotected "
                    f"{100 * drop[False]:.1f} points; protected measurably higher at "
                    f"{len(better)} of {len(ks)} k; protection removes {removed} of {pts[kr, False]['moved']} "
                    f"neurons at k={kr:g}; {len(tasks)} suites x {min(tasks.values())} tasks, "
                    f"{p['traces']} traces",
                    f"Protection {'flattens' if flatter else 'does not measurably flatten'} the k-curve here "
                    f"(protected - unprotected at k = {ks[-1]:g}: {ci(at_top, sign=True)} points, paired; in-domain "
                    f"AVG falls {100 * drop[True]:.1f} points from its best k to k = {ks[-1]:g} with protection, "
                    f"{100 * drop[False]:.1f} without) and is measurably higher at {len(better)} of {len(ks)} k "
                    f"values (lower at {len(worse)}), against the paper's consistently higher, flatter curve; it "
                    f"removes only {removed} of {pts[kr, False]['moved']} donor neurons at k = {kr:g}."))
    if "arm_vs_backbone" in f:
        a = f["arm_vs_backbone"]
        ind = a["in_domain"]
        ws_b, ws_a, d = ind["backbone"]["WS"][0], ind["arm"]["WS"][0], ind["difference"]["WS"]
        ood = a.get("out_of_domain")
        ood_txt = (f"; out of domain WS {pct(ood['backbone']['WS'][0])} -> {pct(ood['arm']['WS'][0])} "
                   f"({ci(ood['difference']['WS'], sign=True)})" if ood else "; no out-of-domain suite")
        tasks = ind["arm"]["tasks"]
        verb = "raises" if _supported(d) else "lowers" if _supported(d, -1) else "does not measurably change"
        on = ind["difference"].get("WS_suite")
        on_txt = f"on {on}, the backbone's worst suite on dev" if on else "WS(ARM) - WS(backbone), conservative bounds"
        out.append(("4. ARM raises the worst suite", "WS 19.1 -> 28.5 (6 suites)",
                    f"in-domain WS {pct(ws_b)} -> {pct(ws_a)} ({ci(d, sign=True)} points, {on_txt}){ood_txt}; "
                    f"{len(tasks)} in-domain suites x {min(tasks.values())} tasks, paired",
                    f"ARM {verb} the in-domain worst suite over its backbone ({pct(ws_b)} -> {pct(ws_a)}, "
                    f"paired difference {ci(d, sign=True)} points {on_txt}; paper 19.1 -> 28.5)."))
    if "role_agnostic" in f:
        r = f["role_agnostic"]
        d = r["difference"]["AVG"]
        same = "the same backbone" if r["selected"] == r["run_selected"] else f"another backbone ({r['selected']})"
        js = [v["jaccard"] for v in r["sets"].values()]
        out.append(("5. Role-agnostic ablation", "role-conditioning is needed (Sec. 5)",
                    f"backbone {r['selected']} (role: {r['run_selected']}); {r['moved']} vs {r['run_moved']} neurons "
                    f"moved, T_b Jaccard {min(js) if js else 1:.2f}-{max(js) if js else 1:.2f}; AVG "
                    f"{pct(r['arm']['AVG'][0])} vs {pct(r['role_arm']['AVG'][0])} ({ci(d, sign=True)})",
                    f"Driven by `response`, ARM picks {same}, moves {r['moved']} neurons instead of "
                    f"{r['run_moved']}, and scores test AVG {pct(r['arm']['AVG'][0])} against the role-conditioned "
                    f"{pct(r['role_arm']['AVG'][0])} (paired {ci(d, sign=True)} points)."))
    if "calibration_size" in f:
        c = f["calibration_size"]
        n, eq = c["smallest_keeping_choice"], c["smallest_equivalent_choice"]
        first = [p for p in c["points"] if p["n"] == c["sizes"][0]] if c["sizes"] else []
        j0 = sum(p["expert_jaccard"] for p in first) / len(first) if first else float("nan")
        arm = c.get("smallest_arm")
        smallest_n = c["sizes"][0] if c["sizes"] else "-"
        score = (f"; the ARM model from n = {arm['n']} ({arm['basis']}, backbone {arm['backbone']}) scores test "
                 f"AVG {pct(arm['AVG'][0])}, {ci(arm['difference']['AVG'], sign=True)} points against the full "
                 "set's" if arm else "")
        keep = (f"from n = {n} trajectories per benchmark every seed keeps the AOS choice ({c['full_selected']})"
                if n is not None else f"no size up to {c['sizes'][-1] if c['sizes'] else '-'} trajectories per "
                f"benchmark keeps the AOS choice ({c['full_selected']}) for every seed")
        eq_txt = (f", though from n = {eq} no choice scores measurably below it (test AVG paired by task)"
                  if n is None and eq else "")
        out.append(("6. Calibration size (open)", "not measured in the paper",
                    f"same choice from n = {n if n is not None else 'none'}, an equally good one from n = "
                    f"{eq if eq is not None else 'none'} (of {min(c['available'].values())}); {c['seeds']} seeds "
                    f"per n; re-trace of {c['traces']} models: {c['trace_seconds']:.0f} s",
                    f"On our pool {keep}{eq_txt}; the experts' top-k sets from {smallest_n} trajectories share "
                    f"{j0:.2f} Jaccard with the full data's{score}."))
    return out


def markdown(s: dict) -> str:
    lines = [f"# Findings on run `{s['name']}`", "",
             f"Run: `{s['run']}`; backbone {s['selected']}; k = {s['k']}. Intervals are 95 % bootstrap "
             "percentiles (tasks resampled within each suite; for correlations, candidates too).", "",
             "| finding | paper | ours (with counts) |", "|---|---|---|"]
    said = sentences(s)
    lines += [f"| {name} | {paper} | {ours} |" for name, paper, ours, _ in said]
    lines += [""] + [f"- **{name}.** {sentence}" for name, _, _, sentence in said]
    lines += ["", f"Traces run by this analysis: {s['traces']}; rollout episodes: {s['rollout_episodes']}.",
              "Stage times: " + ", ".join(f"{k} {v:.1f} s" for k, v in s["timings"].items()) + ".", ""]
    f = s["findings"]
    plots = s.get("plots", {})
    if "aos_vs_quality" in f:
        a = f["aos_vs_quality"]
        lines += ["## 1. AOS against test AVG", "", f"![AOS vs AVG]({plots.get('aos_vs_quality', '')})", "",
                  "| candidate | mean AOS | test AVG % [95 % CI] |", "|---|---:|---:|"]
        lines += [f"| {p['name']} | {p['mean_aos']:.4f} | {ci(p['avg'])} |"
                  for p in sorted(a["points"], key=lambda p: -p["mean_aos"])]
        lines += ["", f"Resamples where a correlation was defined: Pearson {a['n_valid']['pearson']}, Spearman "
                  f"{a['n_valid']['spearman']} of {a['n_boot']}.", ""]
    if "role_overlap" in f and f["role_overlap"]["role"] is not None:
        o = f["role_overlap"]
        lines += ["## 2. Cross-benchmark overlap of salient sets", "", f"![overlap]({plots.get('role_overlap', '')})",
                  "", "Overlap rate (the headline): neurons in two or more sets / neurons in any set (the paper "
                  "gives no formula). Jaccard: mean over pairs of |A ∩ B| / |A ∪ B|. Shared: mean over sets of the "
                  "share of a set that another set also holds. The experts' rows take one set per expert (the "
                  "union of the benchmarks it serves); the backbone's rows one set per benchmark.", "",
                  "| sets | role | overlap rate % | Jaccard % | shared % |", "|---|---|---:|---:|---:|"]
        for key, who, role in (("response", "experts", "response"), ("role", "experts", "each benchmark's"),
                               ("backbone_response", "backbone", "response"),
                               ("backbone_role", "backbone", "each benchmark's")):
            if o.get(key):
                lines.append(f"| {who} | {role} | {pct(o[key]['overlap_rate'])} | {pct(o[key]['jaccard'])} | "
                             f"{pct(o[key]['shared'])} |")
        same = {**{f"{k} (response)": v for k, v in o.get("response_same_expert", {}).items()},
                **{f"{k} (role)": v for k, v in o.get("role_same_expert", {}).items()}}
        if same:
            lines += ["", "Benchmarks one expert serves (a model against itself, left out above): Jaccard "
                      + ", ".join(f"{k} {pct(v)} %" for k, v in same.items()) + "."]
        lines.append("")
    if "protection_sweep" in f:
        p = f["protection_sweep"]
        lines += ["## 3. Protection over k (in-domain suites)", "",
                  f"![protection]({plots.get('protection_sweep', '')})", "",
                  "| k | protection | neurons moved | AVG % [95 % CI] | WS % [95 % CI] |", "|---:|---|---:|---:|---:|"]
        lines += [f"| {q['k']:g} | {'on' if q['protect'] else 'off'} | {q['moved']} | {ci(q['AVG'])} | {ci(q['WS'])} |"
                  for q in p["points"]]
        lines += ["", "| k | protected − unprotected AVG, paired (points) | WS |", "|---:|---:|---:|"]
        lines += [f"| {k} | {ci(d['AVG'], sign=True)} | {ci(d['WS'], sign=True)} |"
                  for k, d in p["protected_minus_unprotected"].items()]
        lines.append("")
    if "arm_vs_backbone" in f:
        a = f["arm_vs_backbone"]
        lines += ["## 4. ARM against its backbone, paired by task", "",
                  f"![ARM vs backbone]({plots.get('arm_vs_backbone', '')})", "",
                  "| suites | backbone WS % | ARM WS % | ARM − backbone WS (points) | WS taken on | AVG difference |",
                  "|---|---:|---:|---:|---|---:|"]
        for part in ("in_domain", "out_of_domain"):
            if a.get(part):
                x = a[part]
                lines.append(f"| {part.replace('_', '-')} ({', '.join(x['benchmarks'])}) | {ci(x['backbone']['WS'])} "
                             f"| {ci(x['arm']['WS'])} | {ci(x['difference']['WS'], sign=True)} | "
                             f"{x['difference'].get('WS_suite') or 'min of each (bounds)'} | "
                             f"{ci(x['difference']['AVG'], sign=True)} |")
        lines += ["", "The paired WS is the difference on the backbone's worst suite on dev, fixed before test "
                  "(a percentile bootstrap of a minimum of means under-covers when suites are close); without dev "
                  "on every suite, the range WS(ARM) − WS(backbone) spans over simultaneous intervals.", ""]
    if "role_agnostic" in f:
        r = f["role_agnostic"]
        lines += ["## 5. Role-agnostic ablation", "", f"![role-agnostic]({plots.get('role_agnostic', '')})", "",
                  f"Selected by `response`: **{r['selected']}** (role-conditioned: {r['run_selected']}); weak: "
                  f"{', '.join(r['weak']) or 'none'}.", "",
                  "| benchmark | role-agnostic T_b | role-conditioned T_b | both | Jaccard |",
                  "|---|---:|---:|---:|---:|"]
        lines += [f"| {b} | {v['a']} | {v['b']} | {v['both']} | {v['jaccard']:.2f} |" for b, v in r["sets"].items()]
        lines += ["", "| model | AVG % | WS % |", "|---|---:|---:|",
                  f"| ARM (role-conditioned) | {ci(r['role_arm']['AVG'])} | {ci(r['role_arm']['WS'])} |",
                  f"| ARM (role-agnostic) | {ci(r['arm']['AVG'])} | {ci(r['arm']['WS'])} |"]
        if "backbone" in r:
            lines.append(f"| role-agnostic backbone | {ci(r['backbone']['AVG'])} | {ci(r['backbone']['WS'])} |")
        lines.append("")
    if "calibration_size" in f:
        c = f["calibration_size"]
        lines += ["## 6. Calibration size", "", f"![calibration]({plots.get('calibration_size', '')})", "",
                  f"Trajectories available per benchmark: {c['available']}. Re-tracing every model once with one "
                  f"group per trajectory took {c['trace_seconds']:.0f} s for {c['traces']} models; the full set "
                  f"reproduces the run's saliency within {c['max_abs_diff_to_run_saliency']:.1e}.", "",
                  "| n | seed | experts' Jaccard | candidates' Jaccard | choice | its test AVG % | minus the full "
                  "choice, paired [95 % CI] | weak | T_b Jaccard | moved |",
                  "|---:|---:|---:|---:|---|---:|---:|---|---:|---:|"]
        for p in c["points"]:
            tj = "—" if p["transplant_jaccard"] is None else f"{p['transplant_jaccard']:.2f}"
            sa = "—" if p["selected_avg"] is None else pct(p["selected_avg"])
            vs = "—" if p.get("minus_full_choice") is None else ci(p["minus_full_choice"], sign=True)
            lines.append(f"| {p['n']} | {p['seed']} | {p['expert_jaccard']:.2f} | {p['candidate_jaccard']:.2f} | "
                         f"{p['selected']}{'' if p['same_choice'] else ' (changed)'} | {sa} | {vs} | "
                         f"{', '.join(p.get('weak', [])) or '—'} | {tj} | {p['moved']} |")
        lines.append("")
    return "\n".join(lines)
