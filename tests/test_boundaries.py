"""The house's rules, read from the imports and calls of the source (ast only): no circle between rooms, the
library never reaches up into the Ray actors, environments never generate text, one module touches weight
files, and the registry of suites sits below everything that uses it. A rule broken names the file and line."""

import ast
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CLIS = {"arm_ray/main.py", "arm_ray/analyze.py"}  # the command lines: the only library modules above `actors`


def sources():
    for f in sorted([*ROOT.glob("arm_ray/**/*.py"), *ROOT.glob("actors/*.py")]):
        yield f.relative_to(ROOT).as_posix(), ast.parse(f.read_text(), str(f))


def imports(tree):
    """(module imported, line) for every import, at the top or inside a function."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from ((a.name, node.lineno) for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module, node.lineno
            yield from ((f"{node.module}.{a.name}", node.lineno) for a in node.names)


def room(module: str) -> str | None:
    """arm_ray's top-level modules and subpackages, and `actors`, are the rooms; anything else is outside."""
    parts = module.split(".")
    if parts[0] == "actors":
        return "actors"
    if parts[0] == "arm_ray" and len(parts) > 1:
        return "arm_ray." + parts[1].removesuffix(".py")
    return None


def room_of_file(rel: str) -> str:
    return room(rel.removesuffix(".py").replace("/", ".").removesuffix(".__init__"))


def arrows() -> dict[str, dict[str, str]]:
    """room -> {room it imports: 'file:line' of the first such import}."""
    out = defaultdict(dict)
    for rel, tree in sources():
        here = room_of_file(rel)
        for module, line in imports(tree):
            there = room(module)
            if there and there != here:
                out[here].setdefault(there, f"{rel}:{line}")
    return out


def cycles(graph: dict[str, dict[str, str]]) -> list[list[str]]:
    """Strongly connected components of more than one room (Tarjan)."""
    index, low, stack, on, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, {}):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(set(graph) | {w for ws in graph.values() for w in ws}):
        if v not in index:
            visit(v)
    return found


def test_cycle_finder_finds_a_circle():
    assert cycles({"a": {"b": ""}, "b": {"c": ""}, "c": {"a": ""}, "d": {"a": ""}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b": ""}, "b": {}}) == []


def test_no_circle_between_rooms():
    graph = arrows()
    found = cycles(graph)
    where = [f"{a} -> {b} ({graph[a][b]})" for comp in found for a in comp for b in graph[a] if b in comp]
    assert not found, "import circles:\n" + "\n".join(where)


def test_only_the_command_lines_reach_up_into_the_actors():
    bad = [f"{rel}:{line} imports {m}" for rel, tree in sources() if rel.startswith("arm_ray/") and rel not in CLIS
           for m, line in imports(tree) if m.split(".")[0] == "actors"]
    assert not bad, "\n".join(bad)


def test_only_the_command_lines_and_the_actors_import_ray():
    allowed = CLIS | {"arm_ray/cli.py"}
    bad = [f"{rel}:{line} imports {m}" for rel, tree in sources() if rel.startswith("arm_ray/") and rel not in allowed
           for m, line in imports(tree) if m.split(".")[0] == "ray"]
    assert not bad, "\n".join(bad)


def test_environments_do_not_know_how_text_is_generated():
    """Suites get a `generate` callable from the rollout side (arm_ray.rollout.user_model); they import no engine,
    policy, agent loop or model library."""
    banned = ("arm_ray.rollout", "arm_ray.toy", "arm_ray.pipeline", "vllm", "transformers")
    bad = [f"{rel}:{line} imports {m}" for rel, tree in sources()
           if rel.startswith(("arm_ray/world/", "arm_ray/benchmarks/"))
           for m, line in imports(tree) if m.startswith(banned)]
    assert not bad, "\n".join(bad)


def test_the_suite_registry_sits_below_config_and_rollouts():
    allowed = ("arm_ray.errors", "arm_ray.registry", "arm_ray.world")
    bad = [f"{rel}:{line} imports {m}" for rel, tree in sources() if rel == "arm_ray/suites.py"
           for m, line in imports(tree) if m.startswith("arm_ray") and not m.startswith(allowed)]
    assert not bad, "\n".join(bad)
    graph = arrows()
    assert "arm_ray.benchmarks" not in graph["arm_ray.config"] and "arm_ray.config" not in graph["arm_ray.benchmarks"]


# receivers of `.save_pretrained` that write no weights: tokenizers and configs
NOT_WEIGHTS = {"tok", "tokenizer", "fast", "cfg", "config"}


def weight_io(tree):
    """(line, what) for each read or write of weight files: safetensors, a model's from_pretrained/save_pretrained."""
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            if any(n.split(".")[0] == "safetensors" for n in names):
                yield node.lineno, "imports safetensors"
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            recv = node.func.value
            name = recv.id if isinstance(recv, ast.Name) else recv.attr if isinstance(recv, ast.Attribute) else ""
            if node.func.attr == "from_pretrained" and ("Model" in name or name.endswith("ForCausalLM")):
                yield node.lineno, f"{name}.from_pretrained"
            if node.func.attr == "save_pretrained" and name not in NOT_WEIGHTS:
                yield node.lineno, f"{name}.save_pretrained"


def test_weight_io_finder_sees_the_usual_calls():
    tree = ast.parse("from safetensors.torch import save_file\nAutoModelForCausalLM.from_pretrained(p)\n"
                     "model.save_pretrained(p)\ntok.save_pretrained(p)\nAutoTokenizer.from_pretrained(p)\n")
    assert [w for _, w in weight_io(tree)] == ["imports safetensors", "AutoModelForCausalLM.from_pretrained",
                                               "model.save_pretrained"]


def test_only_checkpoints_reads_or_writes_weight_files():
    bad = [f"{rel}:{line} {what}" for rel, tree in sources() if rel != "arm_ray/checkpoints.py"
           for line, what in weight_io(tree)]
    assert not bad, "\n".join(bad)


def test_arm_math_is_pure():
    """The spec's equations (selection, saliency, transplant) are torch/numpy: no Ray, no engine, no model library
    (saliency's Parquet table is the one file format they know)."""
    math = {"arm_ray/selection.py", "arm_ray/saliency.py", "arm_ray/transplant.py"}
    banned = ("ray", "vllm", "actors", "transformers", "mergekit", "arm_ray.checkpoints", "arm_ray.pipeline")
    bad = [f"{rel}:{line} imports {m}" for rel, tree in sources() if rel in math
           for m, line in imports(tree) if m.split(".")[0] in banned or m.startswith(banned)]
    assert not bad, "\n".join(bad)
