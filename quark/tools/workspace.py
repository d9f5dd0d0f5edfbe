"""Paths inside a workspace folder, and nothing outside it.

A tool's path argument is relative to the workspace. It is refused when it is absolute, contains a
`..` part, or — once every symlink on the way is resolved — lands outside the workspace, so neither
spelling nor a symlink planted inside the workspace reaches the rest of the machine.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath, PureWindowsPath

from quark.tools.errors import ToolError


def inside(workspace: Path, relative: str) -> Path:
    """The resolved path of `relative` under `workspace`; ToolError with the reason otherwise."""
    if "\x00" in relative:
        raise ToolError("path contains a NUL byte")
    pure = PurePosixPath(relative)
    if pure.is_absolute() or PureWindowsPath(relative).is_absolute() or PureWindowsPath(relative).drive:
        raise ToolError(f"absolute path {relative!r} refused: give a path relative to the workspace")
    if ".." in pure.parts or ".." in PureWindowsPath(relative).parts:
        raise ToolError(f"path {relative!r} refused: '..' may not leave the workspace")
    root = Path(workspace).resolve()
    candidate = (root / pure).resolve()
    if candidate != root and root not in candidate.parents:
        raise ToolError(f"path {relative!r} refused: it leads outside the workspace (through a symlink)")
    return candidate


def relative(workspace: Path, path: Path) -> str:
    """How a path inside the workspace is shown to the model."""
    rel = path.relative_to(Path(workspace).resolve()).as_posix()
    return rel or "."
