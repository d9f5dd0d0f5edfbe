"""`quark serve`: the OpenAI-compatible HTTP server, and `quark serve keys` for its API keys."""

import json
import sys
import time
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from quark.commands._cli import Cli, group, quark_command
from quark.commands._options import (
    DEFAULT_PREFIX_CACHE_MB,
    AdapterOption,
    Compile,
    CompileOption,
    DeviceOption,
    PrefixCacheOption,
    QuantizeOption,
    model_option,
    name_value,
    quantize_mode,
)
from quark.errors import QuarkError
from quark.inference import Engine, PrefixCache
from quark.modelfolder import generation_defaults, load_model
from quark.modelfolder.adapters import list_adapters, side_by_side_adapters
from quark.serving import KeyStore, bind, create_app, is_loopback, parse_rate_limit, read_key_file, run, url_of

if TYPE_CHECKING:
    from quark.agent.routing import AdapterRouter

serve = group("serve", "Serve a model over an OpenAI-compatible HTTP API; manage its API keys.")
keys = group("keys", "Create, list and revoke the server's API keys (stored hashed in quark.db).")
serve.add_typer(keys)


@quark_command(serve, group_default=True)
def serve_command(
    cli: Cli,
    ctx: typer.Context,
    model: Annotated[Optional[list[str]], model_option(
        "Model name (a folder under the home's models/); repeat it to serve an image model beside the language "
        "model.")] = None,
    host: Annotated[str, typer.Option(
        "--host", help="Address to listen on; anything but loopback needs an API key.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=0, max=65535, help="Port; 0 picks a free one (printed).")] = 8000,
    api_key_file: Annotated[Optional[Path], typer.Option("--api-key-file",
                                                         help="Accept the keys in this file (one per line) besides the "
                                                              "home's keys.")] = None,
    quantize: QuantizeOption = None,
    adapter: AdapterOption = None,
    adapters: Annotated[str, typer.Option(
        "--adapters", help="Adapters of the model to serve side by side, each as model NAME:ADAPTER (and NAME:auto, "
                           "routed): all, none, or a comma-separated list.")] = "all",
    router: Annotated[str, typer.Option(
        "--router", help="Router for NAME:auto: a router name, auto (the newest one trained on the model), or "
                         "none (NAME:auto is the base).")] = "auto",
    mesh_adapter: Annotated[Optional[list[str]], typer.Option(
        "--mesh-adapter", callback=name_value, help="Also make meshes at /v1/meshes with this adapter of --model "
        "(repeatable; one served side by side needs no second copy). The served model makes meshes too.")] = None,
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

    One language model, and any image models beside it (/v1/images/generations). The model's
    LoRA adapters are loaded side by side on its one base and served as NAME:ADAPTER, with
    NAME:auto letting the router pick per request (the base without a router); requests for
    different adapters share batches. The language model (and its adapters) also makes 3D assets
    at /v1/meshes. Concurrent requests are batched; a prompt sharing a prefix with an earlier one
    (a system prompt) reuses its KV (--prefix-cache-mb). Once a key exists (or --api-key-file),
    /v1 needs a Bearer key.

    Example:

        quark serve --model tiny --port 8000        # tiny, tiny:code, tiny:auto, … (see /v1/models)

        quark serve --model tiny --model shapes     # + images: client.images.generate(model="shapes", …)

        quark serve --model base --mesh-adapter mesh   # + 3D: POST /v1/meshes {"prompt", "adapter": "mesh"} → GLB

        curl -s localhost:8000/v1/models
    """
    if ctx.invoked_subcommand is not None:
        return None
    if not model:
        raise QuarkError("quark serve needs --model NAME (see quark serve --help)")
    from quark.image.folders import is_pipeline_folder

    folders = {name: cli.home.existing(cli.home.model_dir(name), "model") for name in dict.fromkeys(model)}
    image_names = [name for name, folder in folders.items() if is_pipeline_folder(folder)]
    language = [name for name in folders if name not in image_names]
    if len(language) != 1:
        raise QuarkError(f"quark serve needs exactly one language model among --model, got "
                         f"{', '.join(language) or 'none'} (image models: {', '.join(image_names) or 'none'})")
    model = language[0]
    store = KeyStore(cli.home.db_path, read_key_file(api_key_file) if api_key_file else ())
    public = not is_loopback(host)
    if public and not (store.active_count() or api_key_file):
        raise QuarkError(f"refusing to serve on {host} without an API key: create one with "
                         "`quark serve keys create NAME` or pass --api-key-file (or bind 127.0.0.1)")
    auth = public or store.required()
    folder = cli.home.model_dir(model)
    if adapter and adapters != "all":
        raise QuarkError("choose --adapter NAME (one adapter merged into the weights) or --adapters (side by side), "
                         "not both")
    side = [] if adapter else _side_by_side(cli, adapters, folder)
    sock = bind(host, port)
    engine = Engine.named(cli.home, model, device=device, quantize=quantize_mode(quantize), adapter=adapter,
                          adapters=side, prefix_cache=PrefixCache.from_megabytes(prefix_cache_mb),
                          compile=compile.value)
    routing = _routing(cli, engine, model, router) if side else None
    from quark.retrieval.embedding import load_head

    images = None
    if image_names:
        from quark.image.generate import ImageModel
        from quark.serving.images import ImageService

        images = ImageService([ImageModel(cli.home, name, device=engine.device) for name in image_names])
    from quark.serving.meshes import MeshService

    meshes = MeshService(cli.home, engine, {name: Engine.named(cli.home, model, device=engine.device, adapter=name)
                                            for name in dict.fromkeys(mesh_adapter or ()) if name not in side})
    # A public server requires a key on every request, even after its last key is revoked.
    app = create_app(engine, keys=store, defaults=generation_defaults(folder), max_batch=max_batch,
                     gather_seconds=batch_window_ms / 1000, require_key=public, images=images, router=routing,
                     meshes=meshes, embedding_head=load_head(folder, engine.model.config.n_embd, device=engine.device))
    url = url_of(sock)
    if cli.json:
        print(json.dumps({"model": model, "image_models": image_names, "mesh_adapters": meshes.adapters(),
                          "url": url, "base_url": f"{url}/v1",
                          "auth": auth, "models": app.state.service.models.ids(),
                          "router": routing.name if routing else None,
                          "device": str(engine.device), "quantize": quantize_mode(quantize)}), flush=True)
    else:
        served = ", ".join([*app.state.service.models.ids(), *image_names])
        cli.print(f"serving [bold]{served}[/] on {url}/v1 ({'API key required' if auth else 'no API key needed'}); "
                  "Ctrl-C stops")
        sys.stdout.flush()
    run(app, sock, log_level=log_level)
    cli.err.print("[dim]server stopped[/]")
    return None


def _side_by_side(cli: Cli, spec: str, folder: Path) -> list[str]:
    """--adapters all|none|a,b → the adapters to load beside the base. `all` skips (and names) the
    ones that only run merged; a list names exactly what must load."""
    if spec.strip() == "all":
        usable, skipped = side_by_side_adapters(folder)
        for reason in skipped.values():
            cli.err.print(f"[yellow]skipped:[/] {reason}", highlight=False)
        return usable
    if spec.strip() == "none":
        return []
    have = list_adapters(folder)
    wanted = list(dict.fromkeys(name.strip() for name in spec.split(",") if name.strip()))
    missing = [name for name in wanted if name not in have]
    if missing or not wanted:
        raise QuarkError(f"--adapters {spec!r}: the model has no adapter {', '.join(missing) or '(none named)'} "
                         f"(adapters: {', '.join(have) or 'none'}; or all, none)")
    return wanted


def _routing(cli: Cli, engine: Engine, model: str, spec: str) -> "AdapterRouter":
    """The router NAME:auto uses: --router NAME, the newest one trained on the model (auto), or none."""
    from quark.agent.routing import AdapterRouter, find_router, router_over

    name = find_router(cli.home, model) if spec == "auto" else None if spec == "none" else spec
    if name is None:
        return AdapterRouter(None, engine.adapters)
    # The router reads the served base's embeddings (no second copy), unless the base runs
    # quantized: that is another vector space, so it reads a full-precision copy on the CPU.
    base = engine.model if engine.quantized == "full" else load_model(cli.home.model_dir(model))
    return AdapterRouter(router_over(cli.home, name, base, engine.tokenizer, model), engine.adapters, name)


@quark_command(keys, "create")
def keys_create(
    cli: Cli,
    name: Annotated[str, typer.Argument(help="A name for the key (who or what uses it).")],
    rate_limit: Annotated[Optional[str], typer.Option("--rate-limit",
                                                      help="Requests per minute, e.g. 60/min (default: "
                                                           "unlimited).")] = None,
    token_limit: Annotated[Optional[str], typer.Option("--token-limit",
                                                       help="Generated tokens per minute, e.g. 20000/min "
                                                            "(default: unlimited).")] = None,
) -> dict:
    """Create an API key. The key is printed once; only its hash is stored.

    From the first key on, the server needs a key on every request, even after every key is
    revoked, until `quark serve keys auth off`.

    Example:

        quark serve keys create laptop --rate-limit 120/min --token-limit 20000/min
    """
    limit = parse_rate_limit(rate_limit) if rate_limit is not None else None
    tokens = parse_rate_limit(token_limit, "--token-limit", "tokens") if token_limit is not None else None
    store = KeyStore(cli.home.db_path)
    try:
        key = store.create(name, limit, tokens)
    finally:
        store.close()
    limits = [f"{limit} requests/min" if limit else "", f"{tokens} tokens/min" if tokens else ""]
    shown = ", ".join(filter(None, limits))
    cli.print(f"created API key [bold]{name}[/]{f' ({shown})' if shown else ''}:")
    cli.print(key, highlight=False, markup=False)
    cli.print("[dim]shown once: store it now. Clients send it as 'Authorization: Bearer KEY'.[/]")
    return {"name": name, "key": key, "rate_limit_per_min": limit, "token_limit_per_min": tokens}


@quark_command(keys, "list")
def keys_list(cli: Cli) -> dict:
    """List API keys (names, limits, dates; never the keys themselves).

    Example:

        quark serve keys list --json
    """
    store = KeyStore(cli.home.db_path)
    try:
        rows = store.list()
        required = store.required()
    finally:
        store.close()
    cli.print(f"auth: {'on: requests need a key' if required else 'off: the server is open on loopback'}")
    if not rows:
        cli.print("no API keys (create one with quark serve keys create NAME)")
    for row in rows:
        revoked = row["revoked_at"]
        state = "revoked " + time.strftime("%Y-%m-%d", time.localtime(revoked)) if revoked else "active"
        limit = f"{row['rate_limit']}/min" if row["rate_limit"] else "unlimited"
        tokens = f"{row['token_limit']} tok/min" if row["token_limit"] else "unlimited tokens"
        cli.print(f"{row['name']:<24} {limit:<12} {tokens:<18} created "
                  f"{time.strftime('%Y-%m-%d %H:%M', time.localtime(row['created_at']))}  {state}",
                  highlight=False, markup=False)
    return {"auth": required,
            "keys": [{"name": r["name"], "rate_limit_per_min": r["rate_limit"], "token_limit_per_min": r["token_limit"],
                      "created_at": r["created_at"], "revoked_at": r["revoked_at"], "active": r["revoked_at"] is None}
                     for r in rows]}


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
    cli.print(f"revoked API key [bold]{name}[/] (auth stays on; `quark serve keys auth off` opens a loopback server)")
    return {"name": name, "revoked": True}


class AuthState(str, Enum):
    on = "on"
    off = "off"


@quark_command(keys, "auth")
def keys_auth(cli: Cli, state: Annotated[AuthState, typer.Argument(help="on: every request needs a key; off: "
                                                                   "a loopback server is open.")]) -> dict:
    """Turn API-key auth on or off for this home (kept in quark.db).

    Auth turns on with the first key and stays on after the last is revoked; off is refused
    while a key is active. A server bound beyond loopback needs a key whatever this says.

    Example:

        quark serve keys revoke laptop && quark serve keys auth off
    """
    store = KeyStore(cli.home.db_path)
    try:
        store.set_auth(state is AuthState.on)
    finally:
        store.close()
    cli.print(f"auth {state.value}")
    return {"auth": state is AuthState.on}


def register(root: typer.Typer) -> None:
    root.add_typer(serve)
