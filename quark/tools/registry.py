"""The tool registry: the built-ins plus third-party tools from the `quark.tools` entry points.

A plugin distribution declares, as `llm` plugins do,

    [project.entry-points."quark.tools"]
    weather = "quark_weather:TOOLS"

where the object is a `Tool`, a list of them, or a callable returning either. A plugin that fails
to load, or that reuses a taken name, is reported (`problems`, shown by `quark tools list`) and
skipped: one broken plugin never takes the others, or the agent, down.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
from collections.abc import Iterable

from quark.errors import QuarkError
from quark.tools.base import Tool
from quark.tools.builtin import builtin_tools

ENTRY_POINT_GROUP = "quark.tools"
# Names a user can enable tools by (`quark chat --tools web,code,files`); any tool's own name works too.
GROUPS: dict[str, tuple[str, ...]] = {
    "web": ("web_search", "fetch_url"),
    "code": ("run_code", "run_tests"),
    "files": ("read_file", "write_file", "list_dir", "search_files"),
    "memory": ("memory_search", "checkpoint_save", "checkpoint_load"),
    "mesh": ("generate_mesh",),
}


class Registry:
    def __init__(self, tools: Iterable[Tool] = ()) -> None:
        self._tools: dict[str, Tool] = {}
        self.problems: list[str] = []  # one line per plugin that could not be registered
        for tool in tools:
            self.register(tool)

    def register(self, tool: Tool) -> None:
        if not isinstance(tool, Tool):
            raise QuarkError(f"not a quark.tools.Tool: {tool!r}")
        if tool.name in self._tools:
            raise QuarkError(f"tool {tool.name!r} is registered twice ({self._tools[tool.name].source} and "
                             f"{tool.source})")
        self._tools[tool.name] = tool

    def get(self, name: str) -> Tool | None:
        return self._tools.get(name)

    def __contains__(self, name: str) -> bool:
        return name in self._tools

    def names(self) -> list[str]:
        return list(self._tools)

    def tools(self, allowed: Iterable[str] | None = None) -> list[Tool]:
        """Registered tools, in registration order, optionally only those `allowed`."""
        keep = None if allowed is None else set(allowed)
        return [t for t in self._tools.values() if keep is None or t.name in keep]

    def schemas(self, allowed: Iterable[str] | None = None) -> list[dict]:
        """OpenAI `tools` entries for the model's prompt (and the tool-call grammar)."""
        return [t.schema() for t in self.tools(allowed)]

    def select(self, spec: str) -> frozenset[str]:
        """The tool names a comma-separated `spec` of group names ("web", "code", "files",
        "memory", "all") and tool names enables; an unknown name is a one-line error."""
        chosen: set[str] = set()
        for item in (part.strip() for part in spec.split(",")):
            if not item:
                continue
            if item == "all":
                chosen.update(self._tools)
            elif item in GROUPS:
                chosen.update(name for name in GROUPS[item] if name in self._tools)
            elif item in self._tools:
                chosen.add(item)
            else:
                raise QuarkError(f"unknown tool or tool group {item!r} (groups: all, {', '.join(GROUPS)}; "
                                 f"tools: {', '.join(self._tools)})")
        return frozenset(chosen)

    def load_plugins(self, group: str = ENTRY_POINT_GROUP) -> None:
        for entry in importlib.metadata.entry_points(group=group):
            source = f"plugin:{entry.dist.name}" if entry.dist is not None else f"plugin:{entry.value}"
            try:
                loaded = entry.load()
                if callable(loaded) and not isinstance(loaded, Tool):
                    loaded = loaded()
                tools = [loaded] if isinstance(loaded, Tool) else list(loaded)
                for tool in tools:
                    if not isinstance(tool, Tool):
                        raise TypeError(f"{tool!r} is not a quark.tools.Tool")
                    tool = dataclasses.replace(tool, source=source)
                    self.register(tool)
            except Exception as exc:  # noqa: BLE001 - a broken plugin is reported, never fatal
                self.problems.append(f"entry point {entry.name} = {entry.value} ({source}): "
                                     f"{type(exc).__name__}: {exc}")


def default_registry(*, plugins: bool = True) -> Registry:
    """The built-in tools and (unless `plugins` is false) every installed plugin's."""
    registry = Registry(builtin_tools())
    if plugins:
        registry.load_plugins()
    return registry
