"""The tool registry, run_tool_call (validation, policy, time limit, errors), the audit log,
workspace file tools, web_search on loopback, chat tools, plugins, tracing and `quark tools`."""

from __future__ import annotations

import hashlib
import json
import sys
import time
from pathlib import Path

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from quark.chat.store import ChatStore
from quark.db import connect, transaction
from quark.errors import QuarkError
from quark.home import Home
from quark.memory.extract import NewMemory
from quark.memory.store import MemoryStore
from quark.tools import audit, runner, tracing
from quark.tools.base import Risk, Tool, ToolInput, ToolOutput
from quark.tools.context import ToolContext, ToolPolicy
from quark.tools.errors import ToolError
from quark.tools.registry import Registry, default_registry
from quark.tools.runner import run_tool_call
from quark.tools.settings import ToolSettings, TracingSettings, WebSearchSettings, load_settings
from quark.tools.web import search as providers
from web_fixtures import Site, serve


class EchoIn(ToolInput):
    text: str
    times: int = 1


class EchoOut(ToolOutput):
    text: str


def _echo(args: EchoIn, ctx: ToolContext) -> EchoOut:
    return EchoOut(text=args.text * args.times)


def _sleep(args: EchoIn, ctx: ToolContext) -> EchoOut:
    time.sleep(5)
    return EchoOut(text="late")


def _boom(args: EchoIn, ctx: ToolContext) -> EchoOut:
    raise ZeroDivisionError("division by zero")


def _refuse(args: EchoIn, ctx: ToolContext) -> EchoOut:
    raise ToolError("the thing is refused")


def _wrong(args: EchoIn, ctx: ToolContext) -> dict:
    return {"nope": 1}


def make_tools() -> Registry:
    return Registry([
        Tool("echo", "Repeat text.", EchoIn, EchoOut, _echo),
        Tool("slow", "Sleeps.", EchoIn, EchoOut, _sleep, timeout_s=0.3),
        Tool("boom", "Raises.", EchoIn, EchoOut, _boom),
        Tool("refuse", "Refuses.", EchoIn, EchoOut, _refuse),
        Tool("wrong", "Bad output.", EchoIn, EchoOut, _wrong),
        Tool("danger", "Risky echo.", EchoIn, EchoOut, _echo, risk=Risk.RISKY),
    ])


@pytest.fixture
def ctx(home: Path) -> ToolContext:
    context = ToolContext(home=Home.open(home), conversation_id=None)
    yield context
    context.close()


def test_schemas_come_from_the_input_models() -> None:
    registry = default_registry(plugins=False)
    assert {"web_search", "fetch_url", "run_code", "run_tests", "read_file", "write_file", "list_dir",
            "search_files", "checkpoint_save", "checkpoint_load", "memory_search"} <= set(registry.names())
    for schema in registry.schemas():
        function = schema["function"]
        assert schema["type"] == "function" and set(function) == {"name", "description", "parameters"}
        assert function["parameters"]["type"] == "object" and function["parameters"]["additionalProperties"] is False
    run_code = registry.get("run_code").schema()["function"]["parameters"]
    assert run_code["required"] == ["code"]
    assert run_code["properties"]["language"]["enum"] == ["python", "javascript", "shell"]
    assert registry.get("write_file").risk is Risk.RISKY and registry.get("read_file").risk is Risk.SAFE


def test_every_failure_is_a_tool_error_never_a_crash(ctx: ToolContext) -> None:
    tools = make_tools()
    cases = {
        ("echo", '{"text": "ab", "times": 2}'): ("ok", None),
        ("nosuch", "{}"): ("unknown_tool", "no tool named 'nosuch'"),
        ("echo", '{"text": '): ("invalid_arguments", "not valid JSON"),
        ("echo", "[1, 2]"): ("invalid_arguments", "must be a JSON object"),
        ("echo", '{"times": "x"}'): ("invalid_arguments", "text: Field required; times: Input should be a valid "
                                                          "integer"),
        ("echo", '{"text": "a", "extra": 1}'): ("invalid_arguments", "extra: Extra inputs are not permitted"),
        ("slow", '{"text": "a"}'): ("timeout", "did not finish within its 0.3s limit"),
        ("boom", '{"text": "a"}'): ("error", "boom failed: ZeroDivisionError: division by zero"),
        ("refuse", '{"text": "a"}'): ("error", "the thing is refused"),
        ("wrong", '{"text": "a"}'): ("error", "does not match its schema"),
        ("danger", '{"text": "a"}'): ("denied", "danger is a risky tool"),
    }
    for (name, arguments), (outcome, message) in cases.items():
        start = time.monotonic()
        result = run_tool_call(name, arguments, ctx, tools=tools)
        assert result.outcome == outcome, (name, arguments, result)
        assert time.monotonic() - start < 2
        body = json.loads(result.message("call_1")["content"])
        if outcome == "ok":
            assert body == {"ok": True, "result": {"text": "abab"}}
        else:
            assert body["ok"] is False and body["error"]["type"] == outcome and message in body["error"]["message"]
    message = run_tool_call("echo", {"text": "x"}, ctx, tools=tools).message("call_9")
    assert message["role"] == "tool" and message["tool_call_id"] == "call_9" and message["name"] == "echo"


def test_policy_allowed_tools_and_risky_confirmation(home: Path) -> None:
    tools = make_tools()
    asked = []
    base = Home.open(home)
    only_echo = ToolContext(home=base, policy=ToolPolicy(allowed=frozenset({"echo"})))
    denied = run_tool_call("danger", {"text": "a"}, only_echo, tools=tools)
    assert denied.outcome == "denied" and "not enabled for this conversation (enabled: echo)" in denied.error
    unknown = run_tool_call("nosuch", {}, only_echo, tools=tools)
    assert "(available: echo)" in unknown.error
    yes = ToolContext(home=base,
                      policy=ToolPolicy(confirm=lambda name, args: asked.append((name, args.text)) or True))
    assert run_tool_call("danger", {"text": "a"}, yes, tools=tools).ok and asked == [("danger", "a")]
    assert run_tool_call("echo", {"text": "b"}, yes, tools=tools).ok and len(asked) == 1  # safe tools never ask
    no = ToolContext(home=base, policy=ToolPolicy(confirm=lambda name, args: False))
    assert run_tool_call("danger", {"text": "a"}, no, tools=tools).error == "the user declined to run danger"
    flag = ToolContext(home=base, policy=ToolPolicy(allow_risky=True))
    assert run_tool_call("danger", {"text": "a"}, flag, tools=tools).ok
    for context in (only_echo, yes, no, flag):
        context.close()


def test_audit_log_rows(home: Path) -> None:
    tools = make_tools()
    context = ToolContext(home=Home.open(home), conversation_id=7)
    good = run_tool_call("echo", '{"text": "hi"}', context, tools=tools)
    bad = run_tool_call("echo", '{"text": 1}', context, tools=tools)
    context.close()
    conn = connect(Home.open(home).db_path)
    rows = audit.rows(conn, conversation_id=7)
    assert [r["id"] for r in rows] == [bad.call_id, good.call_id]
    newest, oldest = rows
    assert (oldest["tool"] == "echo" and oldest["arguments"] == '{"text": "hi"}' and oldest["ok"]
            and oldest["kind"] == "tool")
    assert oldest["outcome"] == "ok" and oldest["result"] == good.content()
    assert oldest["result_digest"] == hashlib.sha256(good.content().encode()).hexdigest() == good.digest
    assert oldest["duration_s"] >= 0 and oldest["created_at"] <= time.time()
    assert newest["outcome"] == "invalid_arguments" and not newest["ok"] and "valid string" in newest["error"]
    with pytest.raises(QuarkError, match="no tool call 999"):
        audit.get(conn, 999)
    conn.close()


def test_file_tools_stay_inside_the_workspace(home: Path, tmp_path: Path) -> None:
    workspace = tmp_path / "ws"
    (workspace / "src").mkdir(parents=True)
    (workspace / "src" / "app.py").write_text("def main():\n    return 'needle'\n")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("needle secret")
    (workspace / "out").symlink_to(outside)
    (workspace / "leak.txt").symlink_to(outside / "secret.txt")
    context = ToolContext(home=Home.open(home), workspace=workspace, policy=ToolPolicy(allow_risky=True))
    refusals = [
        ("read_file", {"path": "../outside/secret.txt"}, "'..' may not leave the workspace"),
        ("read_file", {"path": str(outside / "secret.txt")}, "absolute path"),
        ("read_file", {"path": "/etc/passwd"}, "absolute path"),
        ("read_file", {"path": "leak.txt"}, "leads outside the workspace"),
        ("read_file", {"path": "out/secret.txt"}, "leads outside the workspace"),
        ("write_file", {"path": "out/planted.txt", "content": "x"}, "leads outside the workspace"),
        ("write_file", {"path": "src/../../x", "content": "x"}, "'..' may not leave"),
        ("list_dir", {"path": "out"}, "leads outside the workspace"),
        ("search_files", {"pattern": "needle", "path": "out"}, "leads outside the workspace"),
    ]
    for name, args, reason in refusals:
        result = run_tool_call(name, args, context)
        assert result.outcome == "error" and reason in result.error, (name, args, result.error)
    assert not (outside / "planted.txt").exists()
    written = run_tool_call("write_file", {"path": "notes/todo.md", "content": "- ship it\n"}, context)
    assert written.ok and written.output == {"path": "notes/todo.md", "bytes": 10, "created": True}
    assert (workspace / "notes" / "todo.md").read_text() == "- ship it\n"
    assert [p.name for p in (workspace / "notes").iterdir()] == ["todo.md"]  # no temporary left behind
    read = run_tool_call("read_file", {"path": "src/app.py"}, context)
    assert read.output["text"].startswith("def main") and not read.output["truncated"]
    listing = run_tool_call("list_dir", {"recursive": True}, context).output["entries"]
    kinds = {e["path"]: e["type"] for e in listing}
    assert kinds["src/app.py"] == "file" and kinds["out"] == "link" and "out/secret.txt" not in kinds
    found = run_tool_call("search_files", {"pattern": "needle"}, context).output["matches"]
    assert found == [{"path": "src/app.py", "line": 2, "text": "    return 'needle'"}]  # the symlinks are not followed
    no_ws = run_tool_call("read_file", {"path": "a"}, ToolContext(home=Home.open(home)))
    assert "no workspace folder is set" in no_ws.error
    context.close()


@pytest.fixture
def site():
    site = Site()
    server = serve(site)
    yield site
    server.shutdown()
    server.server_close()


def test_web_search_on_a_searxng_compatible_server(site: Site, home: Path) -> None:
    site.json("/search", lambda request: {"query": request.query["q"][0], "results": [
        {"title": "Quark (particle)", "url": "https://en.wikipedia.org/wiki/Quark", "content": "A quark is ..."},
        {"title": "no url"},
        {"title": "Quark toolkit", "url": "https://example.com/quark", "content": None}]})
    settings = ToolSettings(web_search=WebSearchSettings(url=site.url("/")))
    result = run_tool_call("web_search", {"query": "what is a quark"},
                           ToolContext(home=Home.open(home), settings=settings))
    assert result.ok, result.error
    assert result.output["provider"] == "searxng"
    assert result.output["results"] == [
        {"title": "Quark (particle)", "url": "https://en.wikipedia.org/wiki/Quark", "snippet": "A quark is ..."},
        {"title": "Quark toolkit", "url": "https://example.com/quark", "snippet": ""}]
    assert site.requests[0].query == {"q": ["what is a quark"], "format": ["json"]}
    unset = run_tool_call("web_search", {"query": "x"}, ToolContext(home=Home.open(home),
                                                                      settings=load_settings(None, environ={})))
    assert unset.outcome == "error" and "no web search provider is set up" in unset.error


def test_brave_provider_sends_its_key(site: Site, monkeypatch) -> None:
    site.json("/brave", lambda request: {"web": {"results": [{"title": "T", "url": "https://b.example/",
                                                              "description": "D"}]}})
    monkeypatch.setattr(providers, "BRAVE_URL", site.url("/brave"))
    settings = load_settings(None, environ={"BRAVE_API_KEY": "key-123"})
    name, hits = providers.search("q", settings.web_search, limit=3)
    assert name == "brave" and hits == [providers.SearchHit("T", "https://b.example/", "D")]
    assert site.requests[0].headers["x-subscription-token"] == "key-123" and site.requests[0].query["count"] == ["3"]


def test_settings_from_config_toml_and_environment(home: Path) -> None:
    config = Path(home) / "config.toml"
    config.write_text('[chat]\nmax_tokens = 9\n[tools.web_search]\nprovider = "searxng"\n'
                      '[tools.fetch_url]\ndeny_domains = ["bad.example"]\n[tracing]\nexporter = "console"\n')
    settings = load_settings(config, environ={"QUARK_SEARXNG_URL": "http://127.0.0.1:9/"})
    assert settings.web_search.url == "http://127.0.0.1:9/" and settings.fetch_url.deny_domains == ["bad.example"]
    assert settings.fetch_url.allow_loopback is False and settings.tracing.exporter == "console"
    config.write_text("[tools.fetch_url]\nmax_bytes = -1\n")
    with pytest.raises(QuarkError, match=r"config.toml: tools.fetch_url.max_bytes: Input should be greater than 0"):
        load_settings(config)
    config.write_text("[tools]\nallow_loopbak = true\n")
    with pytest.raises(QuarkError, match="tools.allow_loopbak: Extra inputs are not permitted"):
        load_settings(config)


def test_chat_tools_and_checkpoint_audit(home: Path) -> None:
    root = Home.open(home)
    conn = connect(root.db_path)
    store, memories = ChatStore(conn), MemoryStore(conn)
    with transaction(conn):
        conversation = store.create_conversation(title="work")
        store.append(conversation.id, "user", "My favourite language is OCaml.")
        memories.add([NewMemory("fact", "favourite language is OCaml", "preference")], conversation_id=conversation.id,
                     source_message_id=None)
    context = ToolContext(home=root, conversation_id=conversation.id, conn=conn, policy=ToolPolicy(allow_risky=True))
    found = run_tool_call("memory_search", {"query": "favourite language"}, context)
    assert found.ok and found.output["hits"][0]["text"] == "favourite language is OCaml"
    saved = run_tool_call("checkpoint_save", {"name": "before"}, context)
    assert saved.ok and saved.output["messages"] == 1 and saved.output["conversation_id"] == conversation.id
    again = run_tool_call("checkpoint_save", {"name": "before"}, context)
    assert again.outcome == "error" and "already exists" in again.error
    loaded = run_tool_call("checkpoint_load", {"name": "before", "into": "new"}, context)
    assert loaded.ok and loaded.output["conversation_id"] != conversation.id
    kinds = [(r["kind"], r["tool"], r["outcome"]) for r in reversed(audit.rows(conn))]
    assert kinds == [("tool", "memory_search", "ok"), ("checkpoint", "checkpoint_save", "ok"),
                     ("tool", "checkpoint_save", "ok"), ("tool", "checkpoint_save", "error"),
                     ("checkpoint", "checkpoint_load", "ok"), ("tool", "checkpoint_load", "ok")]
    no_conversation = run_tool_call("checkpoint_save", {"name": "x"}, ToolContext(home=root, conn=conn))
    assert "needs a conversation" in no_conversation.error
    conn.close()


PLUGIN = '''
from quark.tools.base import Tool, ToolInput, ToolOutput

class In(ToolInput):
    city: str

class Out(ToolOutput):
    forecast: str

def weather(args, ctx):
    return Out(forecast=f"sunny in {args.city}")

TOOLS = [Tool("weather", "Tomorrow's weather for a city.", In, Out, weather)]
'''


@pytest.fixture
def plugin_path(tmp_path: Path, monkeypatch):
    """A real installed-looking distribution: a module and a .dist-info with entry_points.txt."""
    site_dir = tmp_path / "site"
    (site_dir / "quark_weather-0.1.dist-info").mkdir(parents=True)
    (site_dir / "quark_weather.py").write_text(PLUGIN)
    (site_dir / "quark_weather-0.1.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: quark-weather\nVersion: 0.1\n")
    (site_dir / "quark_weather-0.1.dist-info" / "entry_points.txt").write_text(
        "[quark.tools]\nweather = quark_weather:TOOLS\nbroken = quark_weather:MISSING\n")
    monkeypatch.syspath_prepend(str(site_dir))
    monkeypatch.setattr(runner, "_default", None)
    yield site_dir
    sys.modules.pop("quark_weather", None)
    runner._default = None


def test_plugins_register_through_entry_points(plugin_path: Path, ctx: ToolContext) -> None:
    registry = default_registry()
    assert registry.get("weather").source == "plugin:quark-weather"
    assert len(registry.problems) == 1 and "broken = quark_weather:MISSING" in registry.problems[0]
    assert run_tool_call("weather", {"city": "Oslo"}, ctx, tools=registry).output == {"forecast": "sunny in Oslo"}


def test_tool_calls_emit_spans(ctx: ToolContext) -> None:
    exporter = InMemorySpanExporter()
    tracing.configure(None, exporter=exporter)
    try:
        run_tool_call("echo", {"text": "x"}, ctx, tools=make_tools())
        run_tool_call("slow", {"text": "x"}, ctx, tools=make_tools())
        spans = exporter.get_finished_spans()
        assert [s.name for s in spans] == ["tool.echo", "tool.slow"]
        assert spans[0].attributes["tool.outcome"] == "ok" and spans[1].attributes["tool.outcome"] == "timeout"
        assert spans[0].attributes["tool.call_id"] >= 1
    finally:
        tracing.configure(None)


def test_console_exporter_prints_spans(capsys) -> None:
    tracing.configure(TracingSettings(exporter="console"))
    try:
        with tracing.span("agent.model_call", model="tiny"):
            pass
        tracing.flush()
    finally:
        tracing.configure(None)
    assert '"name": "agent.model_call"' in capsys.readouterr().err


def test_otlp_without_its_package_is_a_clear_error() -> None:
    try:
        import opentelemetry.exporter.otlp.proto.http  # noqa: F401
        pytest.skip("the OTLP exporter is installed")
    except ImportError:
        pass
    with pytest.raises(QuarkError, match="pip install opentelemetry-exporter-otlp-proto-http"):
        tracing.configure(TracingSettings(exporter="otlp"))
    tracing.configure(None)


def test_cli_list_run_log_and_replay(quark, plugin_path: Path, tmp_path: Path) -> None:
    listed = quark.json("tools", "list")
    names = {t["name"]: t for t in listed["tools"]}
    assert names["weather"]["source"] == "plugin:quark-weather" and names["write_file"]["risk"] == "risky"
    assert names["fetch_url"]["schema"]["function"]["parameters"]["required"] == ["url"]
    assert listed["problems"] and "MISSING" in listed["problems"][0]
    ran = quark.json("tools", "run", "weather", "--args", '{"city": "Lima"}')
    assert ran["ok"] and ran["output"] == {"forecast": "sunny in Lima"}
    workspace = tmp_path / "ws"
    workspace.mkdir()
    refused = quark("tools", "run", "write_file", "--args", '{"path": "a.txt", "content": "hi"}', "--workspace",
                    str(workspace), expect=1)
    assert "write_file: denied: write_file is a risky tool" in refused.output and not (workspace / "a.txt").exists()
    wrote = quark.json("tools", "run", "write_file", "--args", '{"path": "a.txt", "content": "hi"}', "--workspace",
                       str(workspace), "--allow-risky")
    assert wrote["ok"] and (workspace / "a.txt").read_text() == "hi"
    bad = quark("tools", "run", "weather", "--args", "{nope", expect=1)
    assert "invalid_arguments" in bad.output and "Traceback" not in bad.output
    log = quark.json("tools", "log", "--limit", "10")["calls"]
    assert [c["tool"] for c in log] == ["weather", "write_file", "write_file", "weather"]
    assert [c["outcome"] for c in log] == ["invalid_arguments", "ok", "denied", "ok"]
    replayed = quark.json("tools", "log", "--replay", str(log[-1]["id"]))
    assert replayed["replay_of"] == log[-1]["id"] and replayed["same_result"] is True
    assert replayed["output"] == {"forecast": "sunny in Lima"}
    assert quark("tools", "log", "--replay", "999", expect=1).output.count("\n") == 1
    assert "quark tools run run_code" in quark("tools", "run", "--help").output


def test_tool_groups_select_names() -> None:
    registry = default_registry(plugins=False)
    assert registry.select("web, files") == {"web_search", "fetch_url", "read_file", "write_file", "list_dir",
                                             "search_files"}
    assert registry.select("code,memory_search") == {"run_code", "run_tests", "memory_search"}
    assert registry.select("all") == set(registry.names()) and registry.select("") == frozenset()
    with pytest.raises(QuarkError, match="unknown tool or tool group 'browser'"):
        registry.select("web,browser")
