"""What a tool call costs on top of the tool: run_tool_call's validation, thread, audit row and
span, as a ratio to calling the tool's function directly; the SSRF guard's check; fetch_url on a
page served on 127.0.0.1 (first fetch vs an ETag revalidation answered 304); run_code in
bubblewrap. Medians of interleaved repeats, so a busy shared machine hits both sides alike.

    python benchmarks/tool_calls.py            # print
    python benchmarks/tool_calls.py --write    # also record under benchmarks/RESULTS.md
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._results import write_section  # noqa: E402
from quark.home import Home  # noqa: E402
from quark.tools import audit  # noqa: E402
from quark.tools.base import Tool, ToolInput, ToolOutput  # noqa: E402
from quark.tools.context import ToolContext  # noqa: E402
from quark.tools.registry import Registry, default_registry  # noqa: E402
from quark.tools.runner import run_tool_call  # noqa: E402
from quark.tools.settings import FetchSettings, ToolSettings  # noqa: E402
from quark.tools.web.addresses import check_url  # noqa: E402
from tests.web_fixtures import Site, serve  # noqa: E402

SECTION = "## Tool calls"


class In(ToolInput):
    text: str
    times: int = 1


class Out(ToolOutput):
    text: str


def echo(args: In, ctx: ToolContext) -> Out:
    return Out(text=args.text * args.times)


def median_ms(fn, repeats: int) -> float:
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1000)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--fetches", type=int, default=30)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()

    home = Home.open(tempfile.mkdtemp(prefix="quark-bench-tools-"))
    tools = Registry([Tool("echo", "Repeat text.", In, Out, echo)])
    ctx = ToolContext(home=home)
    parsed = In(text="ab", times=2)
    direct = median_ms(lambda: echo(In.model_validate_json('{"text": "ab", "times": 2}'), ctx), args.calls)
    through = median_ms(lambda: run_tool_call("echo", '{"text": "ab", "times": 2}', ctx, tools=tools), args.calls)
    bare = median_ms(lambda: echo(parsed, ctx), args.calls)
    with ctx.db() as conn:
        audit_row = median_ms(lambda: audit.record(conn, tool="echo", arguments="{}", outcome="ok", result="{}",
                                                   digest="0" * 64, duration_s=0.0), args.calls)
    guard = median_ms(lambda: check_url("http://93.184.215.14/page"), args.calls)
    guard_name = median_ms(lambda: check_url("https://docs.python.org/3/", resolver=lambda h, p: ["151.101.0.223"]),
                           args.calls)

    site = Site()
    server = serve(site)
    site.page("/robots.txt", "", "text/plain")
    body = "<html><body><article>" + "<p>Quarks combine to form hadrons. " * 200 + "</article></body></html>"
    counter = iter(range(10**9))
    site.routes["/fresh"] = lambda r: (200, {"Content-Type": "text/html"}, body.encode())
    site.routes["/etag"] = lambda r: ((304, {"ETag": '"v"'}, b"") if r.headers.get("if-none-match") == '"v"'
                                      else (200, {"Content-Type": "text/html", "ETag": '"v"'}, body.encode()))
    fetch_ctx = ToolContext(home=home, settings=ToolSettings(fetch_url=FetchSettings(allow_loopback=True)))
    registry = default_registry(plugins=False)
    run_tool_call("fetch_url", {"url": site.url("/etag")}, fetch_ctx, tools=registry)
    fresh = median_ms(lambda: run_tool_call("fetch_url", {"url": site.url(f"/fresh?n={next(counter)}")}, fetch_ctx,
                                            tools=registry), args.fetches)
    revalidated = median_ms(lambda: run_tool_call("fetch_url", {"url": site.url("/etag")}, fetch_ctx, tools=registry),
                            args.fetches)
    server.shutdown()
    code_ctx = ToolContext(home=home, settings=ToolSettings(sandbox="bubblewrap"))
    run_code = median_ms(lambda: run_tool_call("run_code", {"code": "print(1)"}, code_ctx, tools=registry), args.runs)
    for c in (ctx, fetch_ctx, code_ctx):
        c.close()

    date = dt.date.today().isoformat()
    rows = [
        ("echo tool, function only (arguments already parsed)", f"{bare:.4f} ms"),
        ("echo tool, pydantic validation + function", f"{direct:.4f} ms"),
        ("echo tool through `run_tool_call` (validate, policy, thread, audit row, span)", f"{through:.3f} ms"),
        ("**ratio run_tool_call / validation + function**", f"**{through / direct:.0f}×** "
                                                            f"(+{through - direct:.2f} ms per call)"),
        ("of which: one audit row (INSERT in its own transaction)", f"{audit_row:.3f} ms"),
        ("SSRF guard, IPv4 literal", f"{guard:.4f} ms"),
        ("SSRF guard, name through an injected resolver", f"{guard_name:.4f} ms"),
        ("fetch_url, loopback page, 200 (robots.txt + page, trafilatura, cache write)", f"{fresh:.1f} ms"),
        ("fetch_url, same page revalidated (304, cached body)", f"{revalidated:.1f} ms"),
        ("run_code `print(1)` in bubblewrap", f"{run_code:.0f} ms"),
    ]
    table = "\n".join(f"| {a} | {b} |" for a, b in rows)
    text = (f"{SECTION}\n\n`python benchmarks/tool_calls.py --write` — {date}, "
            f"{platform.processor() or platform.machine()}, "
            f"2-core CPU, shared (load average {os.getloadavg()[0]:.1f}); Python {platform.python_version()}. Medians "
            f"of {args.calls} calls "
            f"({args.fetches} fetches, {args.runs} sandbox runs); quark.db on local disk (WAL).\n\n"
            f"| measure | median |\n|---|---:|\n{table}\n")
    print(text)
    if args.write:
        write_section(SECTION, text)


if __name__ == "__main__":
    main()
