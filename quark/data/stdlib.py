"""Every documented function and method the running Python's standard library carries.

quark.data.synth draws its examples from a hand-picked DEFAULT_MODULES (45 pure-Python modules,
~500 functions); retrieval training needs far more pairs than that, and every install carries
hundreds of modules and thousands of documented methods. `stdlib_modules()` lists the importable
public ones (packages walked to their public submodules), `collect_methods()` adds the public
methods of their public classes. Both depend on the Python version, as synth's data already does.

Importing a module is not free of side effects, so a few are never imported: the ones that open a
browser or print on import (antigravity, this), GUI toolkits and their demos, the installers, and
any module with "test" in a part of its name (the test suites; so unittest and doctest too). What
is imported prints nothing (its output is swallowed) and warns nothing.
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import io
import os
import pkgutil
import sys
import sysconfig
import warnings
from collections.abc import Sequence

from quark.data.synth import Function, _source, described_signature

NEVER_IMPORTED = frozenset({
    "antigravity", "this", "idlelib", "tkinter", "turtle", "turtledemo", "test", "lib2to3", "ensurepip", "venv",
    "pydoc_data", "encodings", "xxsubtype", "xxlimited", "xxlimited_35", "msilib",
})


def _quiet_import(name: str) -> object | None:
    """The module, or None when it does not import on this install (any error: a C extension that
    is absent, a platform-only module)."""
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), \
            contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")
        try:
            return importlib.import_module(name)
        except Exception:  # noqa: BLE001 - a module that cannot be imported here is simply not listed
            return None


def _public(name: str) -> bool:
    return not any(part.startswith("_") or "test" in part for part in name.split("."))


def stdlib_modules() -> list[str]:
    """Public standard-library modules and submodules that import on this install, sorted."""
    lib = sysconfig.get_paths()["stdlib"]
    top = {m.name for m in pkgutil.iter_modules([lib, os.path.join(lib, "lib-dynload")])}
    top |= set(sys.builtin_module_names)
    found = []
    for name in sorted(n for n in top if _public(n) and n not in NEVER_IMPORTED):
        module = _quiet_import(name)
        if module is None:
            continue
        found.append(name)
        for sub in pkgutil.walk_packages(getattr(module, "__path__", []), name + ".", onerror=lambda _: None):
            if _public(sub.name) and _quiet_import(sub.name) is not None:
                found.append(sub.name)
    return sorted(set(found))


def collect_methods(modules: Sequence[str]) -> list[Function]:
    """Public methods (functions, builtin method descriptors, class and static methods) defined on
    public classes defined in `modules`, with a docstring of their own (not one inherited, which
    would repeat the base class's text under many names). `name` is "Class.method"."""
    found = []
    for module_name in modules:
        module = _quiet_import(module_name)
        if module is None:
            continue
        for class_name, cls in sorted(vars(module).items()):
            if class_name.startswith("_") or not inspect.isclass(cls) or cls.__module__ != module_name:
                continue
            for name, raw in sorted(vars(cls).items()):
                obj = raw.__func__ if isinstance(raw, (classmethod, staticmethod)) else raw
                if name.startswith("_") or not (inspect.isfunction(obj) or inspect.ismethoddescriptor(obj)):
                    continue
                described = described_signature(obj, name, getattr(obj, "__doc__", None))
                if described is not None:
                    source = _source(obj) if inspect.isfunction(obj) else None
                    found.append(Function(module_name, f"{class_name}.{name}", *described, source))
    return found
