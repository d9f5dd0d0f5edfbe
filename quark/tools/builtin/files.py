"""Workspace file tools: read_file, write_file, list_dir, search_files (see quark.tools.workspace
for how paths are confined). Writes are atomic: a temporary sibling renamed into place."""

from __future__ import annotations

import os
import re
from typing import Literal

from pydantic import Field

from quark.atomic import write_text
from quark.tools.base import Risk, Tool, ToolInput, ToolOutput
from quark.tools.context import ToolContext
from quark.tools.errors import ToolError
from quark.tools.workspace import inside, relative

MAX_READ = 200_000
MAX_SEARCH_FILE = 2_000_000


class ReadFileInput(ToolInput):
    path: str = Field(description="File path relative to the workspace.")
    max_chars: int = Field(20_000, ge=1, le=MAX_READ, description="Longest text returned.")


class ReadFileOutput(ToolOutput):
    path: str
    text: str
    size: int
    truncated: bool


def read_file(args: ReadFileInput, ctx: ToolContext) -> ReadFileOutput:
    workspace = ctx.require_workspace()
    path = inside(workspace, args.path)
    if not path.is_file():
        raise ToolError(f"no file {args.path!r} in the workspace")
    data = path.read_bytes()
    if b"\x00" in data[:8192]:
        raise ToolError(f"{args.path!r} is a binary file")
    text = data.decode("utf-8", errors="replace")
    return ReadFileOutput(path=relative(workspace, path), text=text[:args.max_chars], size=len(data),
                          truncated=len(text) > args.max_chars)


class WriteFileInput(ToolInput):
    path: str = Field(description="File path relative to the workspace; folders are created.")
    content: str = Field(description="The whole new content of the file.")


class WriteFileOutput(ToolOutput):
    path: str
    bytes: int
    created: bool


def write_file(args: WriteFileInput, ctx: ToolContext) -> WriteFileOutput:
    workspace = ctx.require_workspace()
    path = inside(workspace, args.path)
    if path.is_dir():
        raise ToolError(f"{args.path!r} is a folder")
    created = not path.exists()
    write_text(path, args.content)
    return WriteFileOutput(path=relative(workspace, path), bytes=len(args.content.encode("utf-8")), created=created)


class ListDirInput(ToolInput):
    path: str = Field(".", description="Folder relative to the workspace.")
    recursive: bool = False


class Entry(ToolOutput):
    path: str
    type: Literal["file", "dir", "link"]
    size: int | None = None


class ListDirOutput(ToolOutput):
    path: str
    entries: list[Entry]
    truncated: bool


def list_dir(args: ListDirInput, ctx: ToolContext, limit: int = 500) -> ListDirOutput:
    workspace = ctx.require_workspace()
    root = inside(workspace, args.path)
    if not root.is_dir():
        raise ToolError(f"no folder {args.path!r} in the workspace")
    entries: list[Entry] = []
    for folder, dirs, files in os.walk(root):
        dirs.sort()
        for name in [*dirs, *sorted(files)]:
            full = os.path.join(folder, name)
            shown = os.path.relpath(full, workspace.resolve()).replace(os.sep, "/")
            if os.path.islink(full):
                entries.append(Entry(path=shown, type="link"))
            elif name in dirs:
                entries.append(Entry(path=shown, type="dir"))
            else:
                entries.append(Entry(path=shown, type="file", size=os.path.getsize(full)))
        if not args.recursive or len(entries) >= limit:
            break
    return ListDirOutput(path=relative(workspace, root), entries=entries[:limit], truncated=len(entries) > limit)


class SearchFilesInput(ToolInput):
    pattern: str = Field(min_length=1, description="Text to find (a regular expression when regex is true).")
    path: str = Field(".", description="Folder relative to the workspace to search under.")
    regex: bool = False
    max_results: int = Field(50, ge=1, le=500)


class Match(ToolOutput):
    path: str
    line: int
    text: str


class SearchFilesOutput(ToolOutput):
    matches: list[Match]
    truncated: bool


def search_files(args: SearchFilesInput, ctx: ToolContext) -> SearchFilesOutput:
    workspace = ctx.require_workspace()
    root = inside(workspace, args.path)
    try:
        needle = re.compile(args.pattern if args.regex else re.escape(args.pattern))
    except re.error as exc:
        raise ToolError(f"pattern {args.pattern!r} is not a valid regular expression: {exc}") from None
    matches: list[Match] = []
    for folder, dirs, files in os.walk(root):  # os.walk does not descend into symlinked folders
        dirs.sort()
        for name in sorted(files):
            full = os.path.join(folder, name)
            if os.path.islink(full) or os.path.getsize(full) > MAX_SEARCH_FILE:
                continue
            with open(full, "rb") as handle:
                data = handle.read()
            if b"\x00" in data[:8192]:
                continue
            for number, line in enumerate(data.decode("utf-8", errors="replace").splitlines(), start=1):
                if needle.search(line):
                    shown = os.path.relpath(full, workspace.resolve()).replace(os.sep, "/")
                    matches.append(Match(path=shown, line=number, text=line[:300]))
                    if len(matches) > args.max_results:
                        return SearchFilesOutput(matches=matches[:args.max_results], truncated=True)
    return SearchFilesOutput(matches=matches, truncated=False)


TOOLS = [
    Tool("read_file", "Read a text file from the workspace.", ReadFileInput, ReadFileOutput, read_file, timeout_s=10),
    Tool("write_file", "Create or replace a text file in the workspace (atomic).", WriteFileInput, WriteFileOutput,
         write_file, risk=Risk.RISKY, timeout_s=10),
    Tool("list_dir", "List a workspace folder (optionally recursively).", ListDirInput, ListDirOutput, list_dir,
         timeout_s=10),
    Tool("search_files", "Search the workspace's text files for a string or regular expression.", SearchFilesInput,
         SearchFilesOutput, search_files, timeout_s=20),
]
