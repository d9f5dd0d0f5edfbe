"""Tool settings from the home's config.toml (`[tools]`, `[tools.web_search]`, `[tools.fetch_url]`,
`[tracing]`) and the environment.

    [tools]
    sandbox = "auto"              # auto | docker | bubblewrap | unsandboxed
    allow_unsandboxed = false     # only then may "auto" fall back to running code unsandboxed

    [tools.web_search]
    provider = "searxng"          # searxng | brave (default: whichever is configured)
    url = "http://127.0.0.1:8888" # SearXNG base URL          (or $QUARK_SEARXNG_URL)
    api_key = "..."               # Brave subscription token  (or $BRAVE_API_KEY)
    max_results = 5

    [tools.fetch_url]
    allow_domains = []            # when non-empty, only these domains (and their subdomains)
    deny_domains = ["example.org"]
    max_bytes = 2000000
    timeout_s = 15
    respect_robots = true         # for fetches the model asks for
    allow_loopback = false        # lifts the loopback refusal (tests serving pages on 127.0.0.1)
    ca_bundle = "/etc/ssl/private-ca.pem"   # extra CAs for https (default: the usual trust store)

    [tools.generate_mesh]
    model = "base"                # the model that writes scene programs (default: the home's only model)
    adapter = "mesh"              # its 3D-prompt LoRA adapter (quark finetune sft --lora on synth --kind mesh)
    device = "auto"

    [tracing]
    exporter = "none"             # none | console | otlp   (or $QUARK_TRACING)
    endpoint = "http://127.0.0.1:4318/v1/traces"   # OTLP/HTTP (or $OTEL_EXPORTER_OTLP_ENDPOINT)

Other tables of config.toml ([chat], [keys]) belong to other modules and are left alone. A wrong
key or type is one line naming the file and the key.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import tomllib
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from quark.errors import QuarkError

DEFAULT_CONTENT_TYPES = ("text/html", "application/xhtml+xml", "text/plain", "text/markdown", "text/csv",
                         "application/json", "application/xml", "text/xml")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class WebSearchSettings(_Section):
    provider: Literal["searxng", "brave"] | None = None
    url: str | None = None
    api_key: str | None = None
    max_results: int = Field(5, ge=1, le=20)
    timeout_s: float = Field(10.0, gt=0)


class FetchSettings(_Section):
    allow_domains: list[str] = []
    deny_domains: list[str] = []
    max_bytes: int = Field(2_000_000, gt=0)
    max_text_chars: int = Field(20_000, gt=0)
    timeout_s: float = Field(15.0, gt=0)
    max_redirects: int = Field(5, ge=0, le=5)
    content_types: list[str] = list(DEFAULT_CONTENT_TYPES)
    user_agent: str = "QuarkBot/0.1 (+local assistant)"
    respect_robots: bool = True
    cache: bool = True
    allow_loopback: bool = False
    ca_bundle: str | None = None  # PEM file of CAs to trust for https (default: the system's/certifi's)


class MeshToolSettings(_Section):
    model: str | None = None
    adapter: str | None = None
    device: str = "auto"


class TracingSettings(_Section):
    exporter: Literal["none", "console", "otlp"] = "none"
    endpoint: str | None = None


class ToolSettings(_Section):
    sandbox: Literal["auto", "docker", "bubblewrap", "unsandboxed"] = "auto"
    allow_unsandboxed: bool = False
    output_bytes: int = Field(16_000, gt=0)  # run_code/run_tests output kept (head + tail)
    web_search: WebSearchSettings = WebSearchSettings()
    fetch_url: FetchSettings = FetchSettings()
    generate_mesh: MeshToolSettings = MeshToolSettings()
    tracing: TracingSettings = TracingSettings()


def load_settings(path: Path | None, environ: dict[str, str] | None = None) -> ToolSettings:
    """Settings from config.toml at `path` (missing: defaults), then the environment's keys."""
    environ = os.environ if environ is None else environ
    data: dict = {}
    if path is not None and Path(path).is_file():
        try:
            raw = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise QuarkError(f"{path}: {exc}") from None
        data = dict(raw.get("tools", {}))
        if "tracing" in raw:
            data["tracing"] = raw["tracing"]
    try:
        settings = ToolSettings.model_validate(data)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(p) for p in error["loc"])
        section = "tracing" if where.startswith("tracing") else "tools"
        key = where if section == "tracing" else f"tools.{where}"
        raise QuarkError(f"{path}: {key}: {error['msg']}") from None
    search = settings.web_search
    search.url = search.url or environ.get("QUARK_SEARXNG_URL") or None
    search.api_key = search.api_key or environ.get("BRAVE_API_KEY") or None
    tracing = settings.tracing
    if environ.get("QUARK_TRACING"):
        if environ["QUARK_TRACING"] not in ("none", "console", "otlp"):
            raise QuarkError(f"QUARK_TRACING={environ['QUARK_TRACING']!r}: expected none, console or otlp")
        tracing.exporter = environ["QUARK_TRACING"]  # type: ignore[assignment]
    tracing.endpoint = tracing.endpoint or environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or None
    return settings
