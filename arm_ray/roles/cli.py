"""`python -m arm_ray.roles inspect FILE --tokenizer DIR [--benchmark NAME] [--role NAME] [--json]`.

Shows the rendered trajectories with their role spans highlighted and a
summary per benchmark and role; `--json` prints one JSON object per span.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict

from arm_ray.errors import ArmError, DataError
from arm_ray.roles.formats import load_trajectories, require_clean
from arm_ray.roles.parsers import PARSERS, RESPONSE
from arm_ray.roles.spans import TrajectoryEncoder


def _parse(argv):
    ap = argparse.ArgumentParser(prog="python -m arm_ray.roles")
    sub = ap.add_subparsers(dest="command", required=True)
    ins = sub.add_parser("inspect", help="show the role spans of a trajectory file")
    ins.add_argument("file")
    ins.add_argument("--tokenizer", required=True, help="tokenizer directory (with its chat template)")
    ins.add_argument("--benchmark", help="parser for records without a `benchmark` field")
    ins.add_argument("--role", help=f"role to mark (default: the parser's; {RESPONSE} marks every assistant token)")
    ins.add_argument("--positions", choices=["token", "predict"], default="token")
    ins.add_argument("--json", action="store_true", help="one JSON object per span, nothing else")
    ins.add_argument("--limit", type=int, default=None, help="show at most N trajectories (text view)")
    ins.add_argument("--allow-bad-records", action="store_true", help="skip malformed records with a warning")
    return ap.parse_args(argv)


def inspect(args) -> int:
    from transformers import AutoTokenizer

    loaded = load_trajectories(args.file, args.benchmark)
    for w in require_clean(loaded, args.file, args.allow_bad_records):
        print(f"warning: {w}", file=sys.stderr)
    trajs = loaded.trajectories
    for t in trajs:
        if args.role != RESPONSE and t.benchmark not in PARSERS:
            raise DataError(f"{t.source}: benchmark {t.benchmark!r} names no parser "
                            f"(known: {', '.join(PARSERS)}); pass --benchmark or --role {RESPONSE}")
    tok = AutoTokenizer.from_pretrained(args.tokenizer)
    encoder = TrajectoryEncoder(tok, args.positions)
    # a record's own benchmark picks its parser, and with it the default role
    roles = [args.role] if args.role else {t.benchmark: [PARSERS[t.benchmark].role] for t in trajs}
    encoded = encoder.encode(trajs, roles, keep_text=True)
    if args.json:
        for i, e in enumerate(encoded):
            for s in e.spans:
                n = int(((e.offsets[:, 0] < s.end) & (e.offsets[:, 1] > s.start)).sum())
                print(json.dumps({"record": i, "turn": s.turn, "role": s.role, "text": e.text[s.start:s.end],
                                  "n_tokens": n}, ensure_ascii=False))
        return 0
    _show(trajs, encoded, args.limit)
    return 0


def _show(trajs, encoded, limit) -> None:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    console = Console()
    for i, (t, e) in enumerate(zip(trajs, encoded)):
        if limit is not None and i >= limit:
            break
        text = Text(e.text)
        for s in e.spans:
            text.stylize("bold black on yellow", s.start, s.end)
        console.rule(f"record {i} · {t.benchmark or '-'} · {t.source}")
        console.print(text)
    summary = defaultdict(lambda: [0, 0, 0, 0])  # trajectories, spans, tokens, without span
    for t, e in zip(trajs, encoded):
        for role, pos in e.positions.items():
            row = summary[(t.benchmark or "-", role)]
            n_spans = sum(1 for s in e.spans if s.role == role)
            row[0] += 1
            row[1] += n_spans
            row[2] += len(pos)
            row[3] += n_spans == 0
    table = Table(title="role spans")
    for col in ("benchmark", "role", "trajectories", "spans", "tokens", "without a span"):
        table.add_column(col)
    for (b, role), (n, spans, toks, empty) in sorted(summary.items()):
        table.add_row(b, role, str(n), str(spans), str(toks), str(empty))
    console.print(table)


def main(argv=None) -> int:
    args = _parse(argv)
    try:
        return inspect(args)
    except ArmError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
