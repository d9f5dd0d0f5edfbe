"""The agent from the command line: `quark chat --tools … --json` lists each call and result, the
human output prints a line per call, bad tool options are one line, and `quark eval tooluse`
scores held-out tool tasks and stores the result."""

from __future__ import annotations

import json

from agent_fixtures import agent_home, agent_model_home, audit_rows  # noqa: F401  (fixtures)
from conftest import Quark
from quark.home import Home


def test_scripted_chat_with_tools_shows_each_call_in_json_and_as_a_line(agent_home: Home) -> None:
    quark = Quark(agent_home.root)
    out = quark.json("chat", "--tools", "code", "--tool-choice", "run_code", "--message",
                     "What is 37 * 41? Use Python.", "--max-tokens", "60", "--temperature", "0")
    call = out["tool_calls"][0]
    assert call["name"] == "run_code" and set(call) >= {"name", "arguments", "outcome", "result", "duration_s"}
    assert call["outcome"] in ("ok", "error", "invalid_arguments") and call["duration_s"] > 0
    if call["outcome"] == "ok":
        assert set(call["result"]) >= {"exit_code", "stdout", "stderr"}
    assert out["model_calls"] >= 2 and audit_rows(agent_home)[0][:2] == ("run_code", call["outcome"])
    human = quark("chat", "--tools", "code", "--tool-choice", "run_code", "--message", "Run it.",
                  "--max-tokens", "60", "--temperature", "0")
    assert "tool run_code " in human.output  # one line per call (on stderr, mixed in by the runner)


def test_tool_options_without_tools_or_with_unknown_names_are_one_line(agent_home: Home) -> None:
    quark = Quark(agent_home.root)
    for args, message in [(["--workspace", "."], "--workspace and --allow-risky go with --tools"),
                          (["--tool-choice", "required"], "--tool-choice goes with --tools"),
                          (["--tools", "nope"], "unknown tool or tool group 'nope'"),
                          (["--tools", "code", "--tool-choice", "fetch_url"], "'fetch_url', which is not enabled")]:
        result = quark("chat", *args, "--message", "hi", expect=1)
        assert message in result.output and "Traceback" not in result.output


def test_eval_tooluse_scores_held_out_tasks_and_stores_the_result(agent_home: Home, tmp_path) -> None:
    quark = Quark(agent_home.root)
    output = tmp_path / "tooluse.jsonl"
    out = quark.json("eval", "tooluse", "--model", "tiny", "--limit", "4", "--max-new-tokens", "40",
                     "--output", str(output))
    metrics = out["metrics"]
    assert out["task"] == "tooluse" and metrics["tasks"] == 4 and metrics["tool_tasks"] == 3
    assert {"success", "right_tool", "valid_arguments", "correct_answer"} <= set(metrics)
    assert all(0.0 <= metrics[k] <= 1.0 for k in ("success", "right_tool", "valid_arguments", "correct_answer"))
    rows = [json.loads(line) for line in output.read_text().splitlines()]
    assert len(rows) == 4 and rows[-1]["expected_tool"] is None
    report = quark.json("eval", "report", "--model", "tiny")
    assert "tooluse" in json.dumps(report)
