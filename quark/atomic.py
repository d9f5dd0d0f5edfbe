"""Write-then-rename helpers: a crash or Ctrl-C never leaves a half-written file or folder."""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from quark.errors import QuarkError


@contextlib.contextmanager
def atomic_dir(final: Path, *, replace: bool = True) -> Iterator[Path]:
    """Yield a temporary sibling folder; on success it replaces `final` in one rename.

    On any exception (KeyboardInterrupt included) the temporary folder is removed and `final`
    is left as it was.
    """
    final = Path(final)
    _make_parent(final)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{final.name}-", dir=final.parent))
    tmp.chmod(0o777 & ~_umask())  # mkdtemp makes 0700; the result should look like any mkdir
    try:
        yield tmp
        if final.exists():
            if not replace:
                raise FileExistsError(final)
            old = final.with_name(f".old-{final.name}-{os.getpid()}")
            final.rename(old)
            tmp.rename(final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(final)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise_if_disk_full(exc, final)
        raise


DISK_FULL = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT}


def raise_if_disk_full(exc: BaseException, target: Path) -> None:
    """A full disk (or a file-size limit) is the user's to fix, not a bug: say so, naming what
    was being written (the temporary copy is already gone, so nothing half-written is left)."""
    if isinstance(exc, OSError) and exc.errno in DISK_FULL:
        raise QuarkError(f"no space left writing {target} ({exc.strerror}); nothing was changed") from None


def check_target(final: Path | str) -> Path:
    """`final` if a file can be written there: not a folder, no parent that is a file. Commands
    that work long before they write call it first, so a bad -o fails before the work."""
    final = Path(final)
    if final.is_dir():
        raise QuarkError(f"{final} is a folder; give a file name to write")
    if any(p.exists() and not p.is_dir() for p in final.parents):
        raise QuarkError(f"cannot write {final}: a parent of it is a file, not a folder")
    return final


def _make_parent(final: Path) -> None:
    """Create final's folder; a parent that is a file (or unwritable) is the user's error, named."""
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise QuarkError(f"cannot write {final}: a parent of it is a file, not a folder") from None
    except OSError as exc:
        raise QuarkError(f"cannot write {final}: {exc.strerror or exc}") from None


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_file(final: Path, mode: str = "w", **open_kwargs) -> Iterator:
    """Open a temporary sibling of `final` for writing; rename over `final` when the block ends."""
    final = check_target(final)
    _make_parent(final)
    fd, tmp_name = tempfile.mkstemp(prefix=f".tmp-{final.name}-", dir=final.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    tmp.chmod(0o666 & ~_umask())
    try:
        with open(tmp, mode, **open_kwargs) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, final)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        raise_if_disk_full(exc, final)
        raise


def write_text(final: Path, text: str) -> None:
    with atomic_file(final, "w", encoding="utf-8") as handle:
        handle.write(text)


def write_bytes(final: Path, data: bytes) -> None:
    with atomic_file(final, "wb") as handle:
        handle.write(data)
