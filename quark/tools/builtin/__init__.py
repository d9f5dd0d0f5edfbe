"""The built-in tools, one module per family."""

from __future__ import annotations

from quark.tools.base import Tool


def builtin_tools() -> list[Tool]:
    from quark.tools.builtin import chat, code, files, mesh, web

    return [*web.TOOLS, *code.TOOLS, *files.TOOLS, *chat.TOOLS, *mesh.TOOLS]
