"""Routing in the chat, driven by the TUI's pilot: the status bar shows each turn's route, `/route`
pins one, and every decision is stored with its turn (the reply's meta)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from adapter_fixtures import make_routed_home
from quark.agent.router_train import load_router
from quark.agent.routing import adapter_for
from quark.errors import QuarkError
from quark.home import Home
from quark.tui.app import ChatApp
from test_tui import SIZE, _config, _ready, _send

CODE_TURN = "write a Python function that parses dates"


@pytest.fixture(scope="module")
def routed_home(tiny_model_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Home:
    return Home.open(make_routed_home(tiny_model_home, tmp_path_factory.mktemp("tui-route") / "home"))


def test_status_bar_shows_each_turns_route_and_route_pins_one(routed_home: Home) -> None:
    torch.set_num_threads(1)
    _config(routed_home, max_tokens=6)
    decision = load_router(routed_home, "tiny-router").route(CODE_TURN)
    expected = adapter_for(decision.label, ["code", "mesh"])

    async def run() -> None:
        app = ChatApp(routed_home)
        async with app.run_test(size=SIZE) as pilot:
            await _ready(app, pilot)
            session = app.session
            assert session.engine.adapters == ["code", "mesh"] and session.routing.name == "tiny-router"

            await _send(app, pilot, CODE_TURN)
            result = app.last_result
            route = result.route.to_dict()
            assert route["mode"] == "auto" and route["label"] == decision.label and route["adapter"] == expected
            status = str(app.query_one("#status").render())
            assert f"route {decision.label} → {expected or 'base'} ({decision.confidence:.2f}" in status
            stored = session.thread()[-1]
            assert stored.id == result.assistant_message_id and stored.meta["route"] == route
            assert result.as_dict()["route"] == route  # what `quark chat --message --json` prints
            assert set(stored.meta["route"]["scores"]) == {"general", "code", "image", "mesh", "needs-retrieval"}
            # The turn ran with that adapter: its reply is what the engine gives under it.
            rerun = session.engine.for_adapter(expected).generate([result.prompt.ids], session.params())[0]
            assert rerun.text == result.reply

            await _send(app, pilot, "/route mesh")
            assert "next: mesh" in str(app.query_one("#status").render())
            await _send(app, pilot, "hello there")
            assert app.last_result.route.to_dict() == {"label": "mesh", "adapter": "mesh", "mode": "forced"}
            assert session.thread()[-1].meta["route"]["mode"] == "forced"
            assert "route mesh → mesh (forced)" in str(app.query_one("#status").render())

            await _send(app, pilot, "/route general")
            await _send(app, pilot, "and again")
            assert app.last_result.route.adapter is None  # the generalist is the base itself

            await _send(app, pilot, "/route bogus")  # refused in one line; the pinned route stays
            assert session.route_choice == "general"
            with pytest.raises(QuarkError, match="unknown route 'bogus': choose one of auto, general, code"):
                session.set_route("bogus")

            await _send(app, pilot, "/route auto")
            await _send(app, pilot, CODE_TURN)
            assert app.last_result.route.mode == "auto" and app.last_result.route.adapter == expected
            await pilot.press("ctrl+q")

    import asyncio

    asyncio.run(run())
