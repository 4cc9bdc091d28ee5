"""Reading `.npz` files of inputs and parameters (`dslc run --inputs/--params`), with a
diagnostic that names the real cause when a file is not a readable archive of arrays."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from dslc.diagnostics import Diagnostic, DslcError, Span

ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")  # a zip's first entry, or an empty zip
NPY_MAGIC = b"\x93NUMPY"
PICKLE_MAGIC = b"\x80"


def read_npz(path: str, what: str) -> dict[str, np.ndarray]:
    """The arrays of an `.npz` archive; `what` ("inputs", "parameters") names the file in
    diagnostics. Never unpickles: an archive holding Python objects is refused."""
    p = Path(path)
    if not p.exists():
        raise DslcError(Diagnostic("E0601", f"{what} file not found", _whole(path),
                                   found=path))
    if p.is_dir():
        raise _unreadable(path, what, "it is a directory", "a folder",
                          "give the path of an .npz file inside it")
    try:
        with p.open("rb") as f:
            head = f.read(8)
    except OSError as exc:
        raise _unreadable(path, what, "the file cannot be opened",
                          exc.strerror or type(exc).__name__) from None
    if not head.startswith(ZIP_MAGIC):
        raise _unreadable(path, what, "not an npz archive", _kind_of(p, head),
                          "an .npz is a zip archive of .npy arrays: write it with numpy.savez")
    try:
        with np.load(p, allow_pickle=False) as z:
            out = {}
            for key in z.files:
                out[key] = _member(z, key, path, what)
            return out
    except DslcError:
        raise
    except (zipfile.BadZipFile, EOFError) as exc:
        raise _unreadable(path, what, "the zip archive is damaged (truncated or corrupt)",
                          str(exc)[:200] or type(exc).__name__,
                          "write the file again with numpy.savez") from None
    except (OSError, ValueError) as exc:
        raise _unreadable(path, what, "the archive cannot be read",
                          str(exc)[:200] or type(exc).__name__,
                          "write the file again with numpy.savez") from None


def _member(z, key: str, path: str, what: str) -> np.ndarray:
    try:
        value = z[key]
    except ValueError as exc:
        if "allow_pickle" in str(exc):
            raise _unreadable(path, what, f"array '{key}' holds Python objects (dtype object)",
                              f"array '{key}' of dtype object",
                              "dslc reads numeric and bool arrays only; it never unpickles"
                              ) from None
        raise _unreadable(path, what, f"member '{key}' is not a valid .npy array",
                          str(exc)[:200], "write the file again with numpy.savez") from None
    except (zipfile.BadZipFile, EOFError, OSError) as exc:
        raise _unreadable(path, what, f"member '{key}' is damaged (truncated or corrupt)",
                          str(exc)[:200] or type(exc).__name__,
                          "write the file again with numpy.savez") from None
    if not isinstance(value, np.ndarray):  # a zip member that is not an .npy file: raw bytes
        raise _unreadable(path, what, f"member '{key}' is not a .npy array",
                          f"{len(value)} bytes of other data",
                          "an .npz holds only .npy arrays: write it with numpy.savez")
    return value


def _kind_of(p: Path, head: bytes) -> str:
    """What a file that is not a zip archive seems to be, for `found:`."""
    if not head:
        return "an empty file"
    if head.startswith(NPY_MAGIC):
        return "a single .npy array (save it with numpy.savez to make an .npz)"
    if head.startswith(PICKLE_MAGIC):
        return "a Python pickle"
    try:
        with p.open("rb") as f:
            sample = f.read(4096)
        sample.decode("utf-8")
        return "a text file"
    except (UnicodeDecodeError, OSError):
        return f"binary data starting with {head[:4].hex(' ')}"


def _whole(path: str) -> Span:
    return Span(path, 0, 0, 0, 0)


def _unreadable(path: str, what: str, why: str, found: str, hint: str | None = None
                ) -> DslcError:
    return DslcError(Diagnostic("E0602", f"cannot read {what} file: {why}", _whole(path),
                                expected="an .npz archive of numeric arrays (numpy.savez)",
                                found=found, hint=hint))
