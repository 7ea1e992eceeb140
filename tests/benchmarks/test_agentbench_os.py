"""AgentBench OS interaction's own tasks in the sandboxed machine: official loading, protocol, checker, gold replay."""

import json

import pytest

from arm_ray.benchmarks import agentbench_os as abos
from arm_ray.errors import ConfigError
from arm_ray.roles.parsers import agentbench_os as os_spans
from arm_ray.rollout.agent import run_episodes
from arm_ray.rollout.policies import OraclePolicy
from arm_ray.suites import check_suite, get_suite

# standard-set positions: python checks, a check without a null step, start + match, the task whose login files
# must be read before init (Q30), start + a check of a background process (Q47), useradd, group 7
SAMPLE = [0, 11, 21, 28, 34, 35, 37, 47, 49, 60, 100, 143]
NOTHING = "Think: Nothing to do.\n\nAct: finish"


@pytest.fixture(scope="module")
def suite(agentbench_dir, os_home):
    s = get_suite("agentbench_os", "suite", {"data_dir": str(agentbench_dir), "order": "file",
                                             "command_timeout_s": 5})
    check_suite(s, "os")
    return s


def _replies(*texts):
    """A policy that writes `texts` in turn (after the one-shot example's turns), the same for every episode."""
    shot = sum(role == "assistant" for role, _ in abos.ONE_SHOT)

    def policy(turns):
        return [texts[min(sum(m["role"] == "assistant" for m in t.messages) - shot, len(texts) - 1)] for t in turns]
    return policy


def _tiny(tmp_path, tasks: list[dict], scripts: dict[str, str] | None = None):
    """A data dir in the official layout holding `tasks` as group 1 (and as dev)."""
    base = tmp_path / "data" / "os_interaction"
    (base / "data" / "1").mkdir(parents=True)
    (base / "data" / "1" / "t.json").write_text(json.dumps(tasks))
    (base / "data" / "dev.json").write_text(json.dumps(tasks))
    for name, text in (scripts or {}).items():
        (base / "scripts" / "1" / name).parent.mkdir(parents=True, exist_ok=True)
        (base / "scripts" / "1" / name).write_text(text)
    return tmp_path


def test_the_official_sets_load_with_the_official_ids(agentbench_dir):
    std, dev = abos.load_set(agentbench_dir, "std"), abos.load_set(agentbench_dir, "dev")
    assert len(std) == 144 and len(dev) == 26
    assert std[0][0] == "std-001-stock-00000" and std[-1][0] == "std-007-bootstrap-00087"
    groups = [g for _, g, _ in std]
    assert [groups.count(str(g)) for g in range(1, 8)] == [7, 5, 6, 19, 10, 9, 88]
    # two official tasks hold a check list under "create": the harness then runs no init, and neither do we
    odd = [t for _, _, t in [*std, *dev] if not t["init"] and t["check"] and t["description"].startswith("How many")]
    assert odd
    s = get_suite("agentbench_os", "suite", {"data_dir": str(agentbench_dir)})
    first = s.tasks("test", 7)
    assert sorted(t.data["group"] for t in first) == [str(g) for g in range(1, 8)]  # mixed: every group early
    assert {t.task_id for t in s.tasks("test")} == {f"os-{i}" for i, _, _ in std}


@pytest.mark.parametrize("reply, expected", [
    ("Think: list it.\n\nAct: bash\n\n```bash\nls /\n```", ("bash", "ls /")),
    ("Act: bash\n```bash\nA=1\n```\ntext\n```bash\necho $A\n```", ("bash", "A=1\n\necho $A")),  # blocks joined
    ("Think: done.\n\nAct: answer(  42 )", ("commit", "  42 ")),
    ("Act: ANSWER(f(x))", ("commit", "f(x)")),  # first "(" to last ")"
    ("Act: answer 7", (None, None)),  # no parentheses: not an answer
    ("Act: bash\n```bash\nls\n```\nAct: finish", ("commit", None)),  # the last valid action decides
    ("Act: finish\nAct: answer 7", ("commit", None)),  # an invalid last one is skipped
    ("Act:\nanswer(3)", ("commit", "3")),  # Act: reads over newlines
    ("I think the answer is 3.", (None, None)),
])
def test_actions_are_read_as_the_official_harness_reads_them(reply, expected):
    assert abos.extract_action(reply) == expected


def test_output_is_cut_as_the_official_harness_cuts_it():
    assert abos.truncate("a" * 800) == "a" * 800
    assert abos.truncate("a" * 801) == "a" * 780 + "\n[truncated because the output is too long]"


def test_gold_replay_scores_one_and_doing_nothing_zero_on_a_sample(suite):
    tasks = [suite.tasks("test")[i] for i in SAMPLE]
    gold = run_episodes(suite, tasks, OraclePolicy(suite), "test")
    assert [(t.task_id, g.reward, g.error) for t, g in zip(tasks, gold)] == [(t.task_id, 1.0, None) for t in tasks]
    nothing = run_episodes(suite, tasks, _replies(NOTHING), "test")
    assert [n.reward for n in nothing] == [0.0] * len(tasks)
    # the prompt: instructions + one-shot example, then the task; the parser marks every agent turn
    g = gold[0]
    assert g.messages[0]["content"].startswith(abos.PROMPT) and g.messages[6]["content"].startswith(abos.NEW_PROBLEM)
    assert all(os_spans(m["content"]) for m in g.messages if m["role"] == "assistant")


def test_malformed_replies_are_invalid_and_an_uncommitted_episode_scores_zero(tmp_path, os_home):
    data = _tiny(tmp_path, [{"description": "Create /done.", "evaluation": {"check": {"code": "test -f /done"}}}])
    s = get_suite("agentbench_os", "suite", {"data_dir": str(data)})
    task = s.tasks("test")
    bad = run_episodes(s, task, _replies("Sure, I will create it."), "test")[0]
    assert bad.finish_reason == "invalid" and bad.invalid_actions == 1 and bad.reward == 0 and bad.error is None
    make = "Act: bash\n```bash\ntouch /done\n```"
    never = run_episodes(s, task, _replies(make), "test")[0]  # right state, but never says it is done
    assert never.finish_reason == "limit" and never.steps == 8 and never.reward == 0
    done = run_episodes(s, task, _replies(make, NOTHING), "test")[0]
    assert done.reward == 1 and done.finish_reason == "finish"
    assert done.messages[-2]["content"] == "The output of the OS is empty."


def test_init_start_and_checks_share_one_machine(tmp_path, os_home):
    task = {"description": "What is in /srv/word?",
            "create": {"init": [{"code": "useradd -m eve && echo hello > /srv/word && chown eve /srv/word"},
                                {"language": "python", "file": "init/mark.py"}]},
            "start": "export GREETING=$(cat /srv/word)",
            "evaluation": {"check": [None, {"language": "python", "file": "check/same.py"},
                                     "test \"$(stat -c %U /srv/word)\" = eve && test -f /srv/marked"],
                           "example": "cat /srv/word"}}
    scripts = {"init/mark.py": "open('/srv/marked', 'w').write('1')\n",
               "check/same.py": "import sys\nsys.exit(0 if sys.argv[1].strip() == sys.argv[2].strip() else 1)\n"}
    s = get_suite("agentbench_os", "suite", {"data_dir": str(_tiny(tmp_path, [task], scripts))})
    t = s.tasks("test")
    ep = run_episodes(s, t, _replies("Act: bash\n```bash\necho $GREETING\n```", "Act: answer(hello)"), "test")[0]
    assert ep.messages[-2]["content"] == "The output of the OS:\n\nhello\n" and ep.reward == 1
    assert ep.details["checks"] == [(0, "hello\n"), (0, ""), (0, "")]  # the example's output, then two passes
    assert run_episodes(s, t, _replies("Act: answer(bye)"), "test")[0].reward == 0


def test_a_failing_init_ends_the_episode_as_an_error_before_the_agent_acts(tmp_path, os_home):
    task = {"description": "x", "create": {"init": "echo broken >&2; exit 3"}, "evaluation": {"match": "x"}}
    s = get_suite("agentbench_os", "suite", {"data_dir": str(_tiny(tmp_path, [task]))})
    asked = []
    ep = run_episodes(s, s.tasks("test"), lambda turns: asked.extend(turns) or ["Act: answer(x)"], "test")[0]
    assert asked == [] and ep.reward == 0 and ep.finish_reason == "error"
    assert ep.error == "InitFailed: init script 1 of 1 exited 3: broken"


@pytest.mark.parametrize("tasks, message", [
    ("not json", r"t\.json: not readable as JSON"),
    ([{"evaluation": {"match": "1"}}], r"t\.json\[0\]: an OS task needs a description"),
    ([{"description": "d", "evaluation": {}}], r"t\.json\[0\]\.evaluation: needs match or check"),
    ([{"description": "d", "evaluation": {"check": {"language": "c++", "code": "int main(){}"}}}],
     r"t\.json\[0\]\.evaluation\.check: language 'c\+\+' is not supported"),
    ([{"description": "d", "evaluation": {"check": {"file": "check/gone.py"}}}],
     r"script file .*gone\.py does not exist"),
    ([{"description": "d", "evaluation": {"check": [None]}}], r"a null check step runs the example, and there is none"),
])
def test_bad_task_files_are_named_before_any_episode(tmp_path, tasks, message):
    data = _tiny(tmp_path, [])
    (data / "data" / "os_interaction" / "data" / "1" / "t.json").write_text(
        tasks if isinstance(tasks, str) else json.dumps(tasks))
    with pytest.raises(ConfigError, match=message):
        get_suite("agentbench_os", "suite", {"data_dir": str(data)}).tasks("test")


def test_missing_data_dir_or_bad_options_are_clear_errors(tmp_path):
    with pytest.raises(ConfigError, match=r"data_dir: .*os_interaction does not exist.*git clone -b v0.2"):
        get_suite("agentbench_os", "suite", {"data_dir": str(tmp_path)}).check()
    with pytest.raises(ConfigError, match=r"benchmarks\.os\.options\.data_dir: Field required"):
        get_suite("agentbench_os", "benchmarks.os.suite", {})
    with pytest.raises(ConfigError, match=r"splits\.dev: 'standard' is not an OS-interaction set"):
        get_suite("agentbench_os", "suite", {"data_dir": str(tmp_path), "splits": {"dev": "standard"}})
    with pytest.raises(ConfigError, match=r"options.rootfs_dir: .* is not a tree built by"):
        get_suite("agentbench_os", "suite", {"data_dir": str(tmp_path), "rootfs_dir": str(tmp_path)}).home()
