"""One model's τ² episodes as τ²'s own `Results` JSON (its viewer and submission tools read it), rebuilt from
the τ² record each eval row's trajectory carries."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from arm_ray.atomic import atomic_write_text

if TYPE_CHECKING:
    from arm_ray.benchmarks.tau2 import Tau2Suite


def write_results(suite: Tau2Suite, rows: list[dict], path: Path, model: str) -> None:
    data = suite.data
    from tau2.data_model.simulation import (
        AgentInfo,
        Info,
        Results,
        SimulationRun,
        UserInfo,
    )
    from tau2.utils.utils import get_now

    sims, ids, now = [], [], get_now()  # episodes keep no wall-clock times (eval rows are deterministic)
    for r in rows:
        d = json.loads(r["trajectory"]).get("details") or {}
        if "tau2" in d:
            sims.append(SimulationRun.model_validate({**d["tau2"], "start_time": now, "end_time": now,
                                                      "duration": 0.0}))
            ids.append(d["tau2"]["task_id"])
    o, u = suite.options, suite.options.user
    info = Info(git_commit="", num_trials=o.trials, max_steps=o.max_steps, max_errors=o.max_errors,
                user_info=UserInfo(implementation=f"arm_ray {u.kind} user",
                                   llm=getattr(u, "model", None) or getattr(u, "path", None)),
                agent_info=AgentInfo(implementation="arm_ray policy", llm=model),
                environment_info=suite.environment().get_info())
    res = Results(info=info, tasks=[data.tasks[i] for i in dict.fromkeys(ids)], simulations=sims)
    atomic_write_text(path, res.model_dump_json(indent=2))
