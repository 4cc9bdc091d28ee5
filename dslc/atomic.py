"""Atomic file output: every file dslc writes appears whole or not at all."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from dslc.diagnostics import Diagnostic, DslcError, Span


def write_atomic(path: str | os.PathLike, data: bytes) -> None:
    """Write to a temporary file beside `path`, then rename it into place."""
    target = Path(path)
    parent = target.parent if str(target.parent) else Path(".")
    if not parent.is_dir():
        raise DslcError(Diagnostic("E0603", "output folder does not exist",
                                   Span(str(target), 0, 0, 0, 0), found=str(parent)))
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=parent)
    except OSError as exc:
        raise DslcError(Diagnostic("E0604", f"cannot write output: {exc.strerror}",
                                   Span(str(target), 0, 0, 0, 0))) from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        # mkstemp makes the file owner-only; give it the permissions a plain open() would.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, target)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(exc, OSError):
            raise DslcError(Diagnostic("E0604", f"cannot write output: {exc.strerror}",
                                       Span(str(target), 0, 0, 0, 0))) from None
        raise
