"""The project's user-facing error: bad input or a missing file, reported without a traceback."""

from __future__ import annotations

import errno


class WMoEError(Exception):
    """An error the user can fix; the message names the file or dataset and says what to do."""


# What to do about the operating-system errors a user meets with their own files and disks.
_OS_ADVICE = {
    errno.EACCES: "fix the permissions or choose another location",
    errno.EPERM: "fix the permissions (or the immutable attribute) or choose another location",
    errno.EROFS: "the file system is read-only: choose a writable location",
    errno.ENOSPC: "the disk is full: free some space or choose another location",
    errno.EDQUOT: "the disk quota is exhausted: free some space or choose another location",
    errno.ENOENT: "check the path",
    errno.ENOTDIR: "a part of the path is a file, not a folder: check the path",
    errno.EISDIR: "give a file path, not a folder",
    errno.EEXIST: "move the existing entry away or choose another location",
    errno.EMFILE: "too many open files: raise the limit (ulimit -n) or use fewer workers",
}


def os_error_message(exc: OSError, doing: str | None = None) -> str:
    """One line for an ``OSError``: what failed, on which path, and what to do about it."""
    paths = " -> ".join(str(p) for p in (exc.filename, exc.filename2) if p is not None)
    reason = exc.strerror or str(exc) or type(exc).__name__
    name = errno.errorcode.get(exc.errno, "") if exc.errno is not None else ""
    parts = [doing] if doing else []
    parts.append(f"{paths}: {reason}" if paths else reason)
    text = ": ".join(parts) + (f" ({name})" if name else "")
    advice = _OS_ADVICE.get(exc.errno)
    return f"{text}; {advice}" if advice else text
