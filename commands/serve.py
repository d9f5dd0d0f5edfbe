"""`quark serve`: the OpenAI-compatible HTTP server, and `quark serve keys` for its API keys."""

import json
import sys
import time
from pathlib import Path
from typing import Annotated, Optional

import typer

from quark.commands._cli import Cli, group, quark_command
from quark.commands._options import (
    DEFAULT_PREFIX_CACHE_MB,
    AdapterOption,
    Compile,
    CompileOption,
    DeviceOption,
    OptionalModelOption,
    PrefixCacheOption,
    QuantizeOption,
    quantize_mode,
)
from quark.errors import QuarkError
from quark.inference import Engine, PrefixCache
from quark.modelfolder import generation_defaults
from quark.serving import KeyStore, bind, create_app, is_loopback, parse_rate_limit, read_key_file, run, url_of

serve = group("serve", "Serve a model over an OpenAI-compatible HTTP API; manage its API keys.")
keys = group("keys", "Create, list and revoke the server's API keys (stored hashed in quark.db).")
serve.add_typer(keys)


@quark_command(serve, group_default=True)
def serve_command(
    cli: Cli,
    ctx: typer.Context,
    model: OptionalModelOption = None,
    host: Annotated[str, typer.Option(
        "--host", help="Address to listen on; anything but loopback needs an API key.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=0, max=65535, help="Port; 0 picks a free one (printed).")] = 8000,
    api_key_file: Annotated[Optional[Path], typer.Option("--api-key-file",
                                                         help="Accept the keys in this file (one per line) besides the "
                                                              "home's keys.")] = None,
    quantize: QuantizeOption = None,
    adapter: AdapterOption = None,
    device: DeviceOption = "auto",
    max_batch: Annotated[int, typer.Option("--max-batch", min=1, help="Most sequences the engine runs together.")] = 16,
    batch_window_ms: Annotated[float, typer.Option("--batch-window-ms", min=0.0,
                                                   help="How long the engine waits for more requests to "
                                                        "batch.")] = 10.0,
    prefix_cache_mb: PrefixCacheOption = DEFAULT_PREFIX_CACHE_MB,
    compile: CompileOption = Compile.auto,
    log_level: Annotated[str, typer.Option("--log-level",
                                           help="uvicorn log level (warning, info, debug).")] = "warning",
) -> None:
    """Serve a model at /v1 (chat, completions, embeddings, models), with /health and /metrics.

    Concurrent requests are batched; a prompt sharing a prefix with an earlier one (a system
    prompt) reuses its KV (--prefix-cache-mb). Once a key exists (or --api-key-file), /v1 needs a
    Bearer key.

    Example:

        quark serve --model tiny --port 8000

        curl -s localhost:8000/v1/models
    """
    if ctx.invoked_subcommand is not None:
        return None
    if not model:
        raise QuarkError("quark serve needs --model NAME (see quark serve --help)")
    cli.home.existing(cli.home.model_dir(model), "model")
    store = KeyStore(cli.home.db_path, read_key_file(api_key_file) if api_key_file else ())
    auth = store.required()
    if not is_loopback(host) and not auth:
        raise QuarkError(f"refusing to serve on {host} without an API key: create one with "
                         "`quark serve keys create NAME` or pass --api-key-file (or bind 127.0.0.1)")
    sock = bind(host, port)
    engine = Engine.named(cli.home, model, device=device, quantize=quantize_mode(quantize), adapter=adapter,
                          prefix_cache=PrefixCache.from_megabytes(prefix_cache_mb), compile=compile.value)
    folder = cli.home.model_dir(model)
    from quark.retrieval.embedding import load_head

    app = create_app(engine, keys=store, defaults=generation_defaults(folder), max_batch=max_batch,
                     gather_seconds=batch_window_ms / 1000,
                     embedding_head=load_head(folder, engine.model.config.n_embd, device=engine.device))
    url = url_of(sock)
    if cli.json:
        print(json.dumps({"model": model, "url": url, "base_url": f"{url}/v1", "auth": auth,
                          "device": str(engine.device), "quantize": quantize_mode(quantize)}), flush=True)
    else:
        cli.print(f"serving [bold]{model}[/] on {url}/v1 ({'API key required' if auth else 'no API key needed'}); "
                  "Ctrl-C stops")
        sys.stdout.flush()
    run(app, sock, log_level=log_level)
    cli.err.print("[dim]server stopped[/]")
    return None


@quark_command(keys, "create")
def keys_create(
    cli: Cli,
    name: Annotated[str, typer.Argument(help="A name for the key (who or what uses it).")],
    rate_limit: Annotated[Optional[str], typer.Option("--rate-limit",
                                                      help="Requests per minute, e.g. 60/min (default: "
                                                           "unlimited).")] = None,
) -> dict:
    """Create an API key. The key is printed once; only its hash is stored.

    Example:

        quark serve keys create laptop --rate-limit 120/min
    """
    limit = parse_rate_limit(rate_limit) if rate_limit is not None else None
    store = KeyStore(cli.home.db_path)
    try:
        key = store.create(name, limit)
    finally:
        store.close()
    cli.print(f"created API key [bold]{name}[/]{f' ({limit} requests/min)' if limit else ''}:")
    cli.print(key, highlight=False, markup=False)
    cli.print("[dim]shown once: store it now. Clients send it as 'Authorization: Bearer KEY'.[/]")
    return {"name": name, "key": key, "rate_limit_per_min": limit}


@quark_command(keys, "list")
def keys_list(cli: Cli) -> dict:
    """List API keys (names, limits, dates; never the keys themselves).

    Example:

        quark serve keys list --json
    """
    store = KeyStore(cli.home.db_path)
    try:
        rows = store.list()
    finally:
        store.close()
    if not rows:
        cli.print("no API keys: the server is open on loopback (create one with quark serve keys create NAME)")
    for row in rows:
        revoked = row["revoked_at"]
        state = "revoked " + time.strftime("%Y-%m-%d", time.localtime(revoked)) if revoked else "active"
        limit = f"{row['rate_limit']}/min" if row["rate_limit"] else "unlimited"
        cli.print(f"{row['name']:<24} {limit:<12} created "
                  f"{time.strftime('%Y-%m-%d %H:%M', time.localtime(row['created_at']))}  {state}",
                  highlight=False, markup=False)
    return {"keys": [{"name": r["name"], "rate_limit_per_min": r["rate_limit"], "created_at": r["created_at"],
                      "revoked_at": r["revoked_at"], "active": r["revoked_at"] is None} for r in rows]}


@quark_command(keys, "revoke")
def keys_revoke(cli: Cli, name: Annotated[str, typer.Argument(help="The key's name.")]) -> dict:
    """Revoke an API key; a running server refuses it from its next request on.

    Example:

        quark serve keys revoke laptop
    """
    store = KeyStore(cli.home.db_path)
    try:
        store.revoke(name)
    finally:
        store.close()
    cli.print(f"revoked API key [bold]{name}[/]")
    return {"name": name, "revoked": True}


def register(root: typer.Typer) -> None:
    root.add_typer(serve)
