"""Tools in the Textual app, driven by its pilot: /run into a collapsible panel, the model's tool
calls as panels with status and duration, and the confirmation dialog for a risky tool."""

from __future__ import annotations

import asyncio
from pathlib import Path

from agent_fixtures import agent_home, agent_model_home, audit_rows  # noqa: F401  (fixtures)
from quark.home import Home
from quark.tui.app import ChatApp
from quark.tui.widgets import ToolConfirm, ToolPanel

SIZE = (140, 40)
WRITE = {"type": "function", "function": {"name": "write_file"}}


async def _settle(app: ChatApp, pilot) -> None:
    await app.workers.wait_for_complete()
    await pilot.pause()


async def _enter(app: ChatApp, pilot, text: str) -> None:
    app.query_one("#prompt").value = text
    await pilot.press("enter")


def test_run_puts_the_sandbox_result_in_a_collapsible_panel(agent_home: Home) -> None:
    async def run() -> None:
        app = ChatApp(agent_home)
        async with app.run_test(size=SIZE) as pilot:
            await _settle(app, pilot)
            await _enter(app, pilot, "/run print(6 * 7)")
            await _settle(app, pilot)
            panel = app.query_one(ToolPanel)
            assert panel.collapsed and panel.outcome == "ok" and panel.title.startswith("tool run_code (you) · ok · ")
            assert '"stdout": "42\\n"' in panel.text
            await _enter(app, pilot, "/fetch")  # no URL: a usage line, no crash
            await _settle(app, pilot)
            assert len(app.query(ToolPanel)) == 1
    asyncio.run(run())
    assert [row[:2] for row in audit_rows(agent_home)] == [("run_code", "ok")]


def test_a_risky_model_call_asks_first_and_the_panels_show_each_outcome(agent_home: Home, tmp_path: Path) -> None:
    agent_home.config_path.write_text("[chat]\nmax_tokens = 200\ntemperature = 0.0\nseed = 1\n")  # greedy: short
    workspace = tmp_path / "workspace"
    workspace.mkdir()

    async def run() -> None:
        app = ChatApp(agent_home, tools="files", workspace=str(workspace))
        async with app.run_test(size=SIZE) as pilot:
            await _settle(app, pilot)
            app.tool_choice = [WRITE, "none"]
            await _enter(app, pilot, "Save a note, please.")
            for _ in range(600):  # the dialog appears once the model has written the call
                await pilot.pause(0.05)
                if isinstance(app.screen, ToolConfirm):
                    break
            assert isinstance(app.screen, ToolConfirm) and app.screen.tool == "write_file"
            await pilot.press("y")
            await _settle(app, pilot)
            first = app.query(ToolPanel).last()
            # Confirmed, it ran (the untrained model's path may still be refused by the workspace rules).
            assert first.outcome in ("ok", "error") and "(model)" in str(first.title)
            assert f" · {first.outcome} · " in str(first.title) and str(first.title).endswith("s")
            await _enter(app, pilot, "Save another note.")
            for _ in range(600):
                await pilot.pause(0.05)
                if isinstance(app.screen, ToolConfirm):
                    break
            await pilot.press("n")
            await _settle(app, pilot)
            second = app.query(ToolPanel).last()
            assert second.outcome == "denied" and "declined" in second.text
            conversation, first_outcome = app.session.conversation_id, first.outcome
        reopened = ChatApp(agent_home, conversation_id=conversation)
        async with reopened.run_test(size=SIZE) as pilot:
            await _settle(reopened, pilot)
            assert [p.outcome for p in reopened.query(ToolPanel)] == [first_outcome, "denied"]
    asyncio.run(run())
    outcomes = [row[:2] for row in audit_rows(agent_home)]
    assert outcomes[0][0] == "write_file" and outcomes[0][1] != "denied" and outcomes[1] == ("write_file", "denied")
