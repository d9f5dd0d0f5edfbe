"""The agent loop in a chat session, driven with a tiny untrained model: the grammar makes its tool
calls parse, the runner validates and audits them, results are stored in the message tree, and
an end-to-end turn on loopback searches, fetches and cites the page."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from agent_fixtures import agent_home, agent_model_home, audit_rows  # noqa: F401  (fixtures)
from quark.agent.events import ToolCallFinished, ToolCallStarted
from quark.agent.grounding import SOURCES_HEADER, grounded_tools, seen_urls
from quark.chat import ChatSession
from quark.errors import QuarkError
from quark.home import Home
from quark.tools import tracing
from quark.tools.runner import registry
from web_fixtures import Site, serve

RUN_CODE = {"type": "function", "function": {"name": "run_code"}}


def test_a_forced_run_code_call_is_validated_run_audited_and_stored_in_the_tree(agent_home: Home,
                                                                                 tmp_path: Path) -> None:
    session = ChatSession(agent_home)
    try:
        assert session.enable_tools("code", workspace=tmp_path) == ["run_code", "run_tests"]
        events: list = []
        result = session.send("What is 37 * 41? Use Python.", on_event=events.append, tool_choice=[RUN_CODE])
        thread = session.thread()
    finally:
        session.close()
    started, finished = events[0], events[1]
    assert isinstance(started, ToolCallStarted) and started.name == "run_code"
    assert isinstance(finished, ToolCallFinished) and finished.call_id == started.call_id
    call = result.tool_calls[0]
    assert call.name == "run_code" and call.outcome in ("ok", "invalid_arguments", "error", "timeout")
    record = result.as_dict()["tool_calls"][0]
    assert set(record) >= {"name", "arguments", "outcome", "result", "duration_s"}
    assert result.model_calls >= 2  # the call, then (at least) the answer
    # The tree: user → assistant tool call → tool result → … → the answer; the window renders them.
    roles = [m.role for m in thread]
    assert roles[0] == "user" and roles[1:3] == ["assistant", "tool"] and roles[-1] == "assistant"
    assert thread[1].meta["tool_calls"][0]["function"]["name"] == "run_code"
    assert thread[2].meta["tool_call_id"] == thread[1].meta["tool_calls"][0]["id"]
    assert thread[1].as_chat()["tool_calls"] and thread[2].as_chat()["tool_call_id"]
    assert json.loads(thread[2].content)["ok"] == (call.outcome == "ok")
    assert thread[-1].meta["agent"]["tool_calls"][0]["name"] == "run_code"
    assert [row[0] for row in audit_rows(agent_home)][:1] == ["run_code"]
    assert audit_rows(agent_home)[0][2] == result.conversation_id


def test_risky_tools_are_refused_without_the_flag_and_asked_with_a_confirm_callback(agent_home: Home,
                                                                                     tmp_path: Path) -> None:
    write = {"type": "function", "function": {"name": "write_file"}}
    workspace = tmp_path / "workspace"
    workspace.mkdir()
    session = ChatSession(agent_home)
    try:
        session.enable_tools("files", workspace=workspace)
        params = session.params(max_tokens=300, temperature=0.0)  # greedy: short strings (sampled ones run long)
        refused = session.send("Save a note.", params, tool_choice=[write, "none"])
        asked: list[str] = []
        session.enable_tools("files", workspace=workspace, confirm=lambda name, args: asked.append(name) or False)
        declined = session.send("Save a note.", params, tool_choice=[write, "none"])
    finally:
        session.close()
    assert refused.tool_calls[0].outcome == "denied", refused.tool_calls[0].result.error
    assert "--allow-risky" in refused.tool_calls[0].result.error
    assert asked == ["write_file"] and declined.tool_calls[0].result.error == "the user declined to run write_file"
    assert not any(workspace.iterdir())  # nothing was written
    assert [row[1] for row in audit_rows(agent_home)] == ["denied", "denied"]


def test_a_call_cut_off_by_max_tokens_goes_back_to_the_model_as_a_tool_error(agent_home: Home) -> None:
    session = ChatSession(agent_home)
    try:
        session.enable_tools("code")
        result = session.send("Run something.", session.params(max_tokens=4), tool_choice=["required", "none"])
    finally:
        session.close()
    call = result.tool_calls[0]
    assert call.outcome in ("invalid_arguments", "unknown_tool") and call.result.error
    assert result.finish_reason in ("stop", "length")


def test_the_step_limit_ends_the_turn_in_a_text_answer(agent_home: Home) -> None:
    session = ChatSession(agent_home)
    try:
        session.enable_tools("code", max_steps=2)
        result = session.send("Keep calling tools.", tool_choice="required")
    finally:
        session.close()
    assert len(result.tool_calls) == 2 and result.model_calls == 3  # two tool steps, then "none"


def test_a_tool_choice_naming_a_tool_that_is_not_enabled_is_one_line(agent_home: Home) -> None:
    session = ChatSession(agent_home)
    try:
        session.enable_tools("code")
        turn = session.begin("hi", tool_choice={"type": "function", "function": {"name": "fetch_url"}})
        with pytest.raises(QuarkError, match="'fetch_url', which is not enabled"):
            list(session.events(turn))
        with pytest.raises(QuarkError, match="unknown tool or tool group 'nope'"):
            session.enable_tools("nope")
    finally:
        session.close()


def test_the_prompt_budget_counts_the_tools_and_the_stored_tool_messages(agent_home: Home) -> None:
    session = ChatSession(agent_home)
    try:
        session.enable_tools("code")
        session.send("What is 2 + 2? Use Python.", tool_choice=[RUN_CODE])
        turn = session.begin("And 3 + 3?")
        prompt = turn.prompt
    finally:
        session.close()
    assert prompt.sections["tools"] > 0 and "You can call tools" in prompt.system
    window = [m.as_chat() for m in prompt.window]
    assert [m["role"] for m in window][:3] == ["user", "assistant", "tool"] and window[1]["tool_calls"]
    assert prompt.sections["window"] == sum(len(session.engine.tokenizer.encode_turn(m)) for m in window)


def test_an_agent_turn_emits_spans_for_the_turn_the_model_calls_and_each_tool_call(agent_home: Home) -> None:
    exporter = InMemorySpanExporter()
    tracing.configure(None, exporter=exporter)
    try:
        session = ChatSession(agent_home)
        try:
            session.enable_tools("code")
            session.send("What is 5 * 5? Use Python.", tool_choice=[RUN_CODE, "none"])
        finally:
            session.close()
        names = [s.name for s in exporter.get_finished_spans()]
    finally:
        tracing.configure(None)
    assert names.count("agent.model_call") == 2 and "tool.run_code" in names and names[-1] == "agent.turn"
    turn = exporter.get_finished_spans()[-1]
    assert turn.attributes["agent.tool_calls"] == 1 and turn.attributes["agent.model_calls"] == 2


def test_fetch_urls_are_held_to_the_urls_the_turn_has_seen() -> None:
    tools = registry().schemas(["web_search", "fetch_url"])
    messages = [{"role": "user", "content": "look at https://a.test/x."},
                {"role": "tool", "content": '{"results": [{"url": "http://127.0.0.1:5/page"}]}'}]
    urls = seen_urls(messages)
    assert urls == ["https://a.test/x", "http://127.0.0.1:5/page"]
    fetch = grounded_tools(tools, urls)[1]["function"]["parameters"]["properties"]["url"]
    assert fetch["enum"] == urls and grounded_tools(tools, []) == tools


PAGE = ("<html><head><title>Quokka facts</title></head><body><article><h1>Quokka facts</h1>"
        "<p>The quokka is a small marsupial that lives on Rottnest Island in Western Australia. "
        "It weighs between 2.5 and 5 kilograms and eats grasses and leaves.</p></article></body></html>")


def test_end_to_end_on_loopback_search_then_fetch_and_the_answer_cites_the_page(agent_home: Home) -> None:
    site = Site()
    server = serve(site)
    try:
        site.page("/quokka", PAGE)
        site.page("/robots.txt", "User-agent: *\nAllow: /\n", "text/plain")
        site.json("/search", lambda request: {"results": [
            {"title": "Quokka facts", "url": site.url("/quokka"), "content": "The quokka is a small marsupial."}]})
        agent_home.config_path.write_text(
            "[chat]\nmax_tokens = 200\ntemperature = 0.0\nseed = 3\n"  # greedy: short argument strings
            f'[tools.web_search]\nprovider = "searxng"\nurl = "{site.url("/")}"\n'
            "[tools.fetch_url]\nallow_loopback = true\n")
        session = ChatSession(agent_home)
        try:
            session.enable_tools("web")
            choice = [{"type": "function", "function": {"name": name}} for name in ("web_search", "fetch_url")]
            result = session.send("Where do quokkas live?", tool_choice=[*choice, "none"])
        finally:
            session.close()
    finally:
        server.shutdown()
    search, fetch = result.tool_calls
    assert search.name == "web_search" and search.outcome == "ok", search.result.error
    assert fetch.name == "fetch_url" and fetch.outcome == "ok", fetch.result.error
    assert json.loads(fetch.arguments)["url"] == site.url("/quokka")  # a URL the search returned
    assert "Rottnest Island" in fetch.result.output["content"]
    assert "/quokka" in site.paths() and "/search" in site.paths()
    assert f"{SOURCES_HEADER}\n[1] Quokka facts — {site.url('/quokka')}" in result.reply
    audited = [(tool, outcome) for tool, outcome, _ in audit_rows(agent_home)]
    assert audited == [("web_search", "ok"), ("fetch_url", "ok")]


def test_without_the_loopback_setting_the_fetch_is_refused_and_the_turn_still_ends(agent_home: Home) -> None:
    site = Site()
    server = serve(site)
    try:
        site.page("/quokka", PAGE)
        session = ChatSession(agent_home)
        try:
            session.enable_tools("web")
            fetch = {"type": "function", "function": {"name": "fetch_url"}}
            result = session.send(f"Read {site.url('/quokka')}", session.params(max_tokens=200),
                                  tool_choice=[fetch, "none"])
        finally:
            session.close()
    finally:
        server.shutdown()
    assert json.loads(result.tool_calls[0].arguments) == {"url": site.url("/quokka")}  # the URL it was given
    assert result.tool_calls[0].outcome == "error" and "loopback" in result.tool_calls[0].result.error
    assert site.paths() == [] and SOURCES_HEADER not in result.reply
