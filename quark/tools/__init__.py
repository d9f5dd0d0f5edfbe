"""Tools the assistant can call, and the one function that runs a call.

    from quark.tools.runner import run_tool_call
    from quark.tools.context import ToolContext, ToolPolicy
    result = run_tool_call("fetch_url", '{"url": "https://example.com"}', ToolContext.open(home))
    messages.append(result.message(tool_call_id))

Modules: `base` (Tool, Risk, ToolInput/ToolOutput), `errors` (ToolError), `registry` (built-ins + the
`quark.tools` entry points), `context` (ToolContext, ToolPolicy), `runner` (run_tool_call),
`result` (ToolResult), `audit` (the tool_calls log), `settings` (config.toml), `tracing`
(OpenTelemetry), `workspace` (path confinement), `web/` (SSRF guard, fetcher, cache, robots,
search providers), `builtin/` (the tools themselves). This package imports nothing eagerly, so
low-level modules (quark.chat.snapshot uses `audit`) can import its parts without a cycle.
"""
