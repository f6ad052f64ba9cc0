"""Helpers of the robustness tests: a snapshot of a folder tree, and the command line run in-process."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from wmoe_clip.cli import main


def tree(root: Path) -> dict[str, str]:
    """Every entry under ``root`` (relative path -> sha256 of a file, "dir", or a link's target)."""
    out = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        if p.is_symlink():
            out[rel] = "link:" + os.readlink(p)
        elif p.is_dir():
            out[rel] = "dir"
        elif p.is_file():
            out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
        else:
            out[rel] = "special"
    return out


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    """``wmoe-clip ARGS`` in this process: exit status, stdout, stderr."""
    capsys.readouterr()
    rc = main([str(a) for a in args])
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


def assert_one_line_error(err: str, rc: int) -> str:
    """The command failed the project's way: exit 2 and one ``error:`` line, no traceback."""
    assert rc == 2, err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if "error:" in line]
    assert len(lines) == 1, err
    return lines[0]
