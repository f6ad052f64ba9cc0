"""Site values of the SLURM profile (``profiles/slurm/config.yaml``) and its job-status command.

The profile is a YTE template (Snakemake renders it when it loads the profile) that takes every site
value from :func:`site`: ``$WMOE_SLURM_<NAME>`` when set, else the default written in the profile.
So a site edits the defaults in one block of the profile, or overrides any of them per command:
``WMOE_SLURM_PARTITION=gpu WMOE_SLURM_ACCOUNT=lab snakemake --profile profiles/slurm ...``.

Every value (set or default) is checked against its accepted form in :data:`SITE_VALUES` when the
profile loads, and so is every ``WMOE_SLURM_*`` variable in the environment (:func:`check_environment`,
which catches a misspelt name): a bad value is one line naming the variable, not a Snakemake traceback
or an ``sbatch`` failure hundreds of lines later.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Callable

from .errors import WMoEError

ENV_PREFIX = "WMOE_SLURM_"
STATUS_COMMANDS = ("sacct", "squeue")

_NAME = re.compile(r"[A-Za-z0-9_.-]+")
_NAMES = re.compile(r"[A-Za-z0-9_.-]+(,[A-Za-z0-9_.-]+)*")
# Snakemake's `runtime`: minutes, or one number with a unit (humanfriendly's timespan), e.g. 45m, 12h, 2d.
_RUNTIME = re.compile(r"(?P<number>[0-9]*\.?[0-9]+)\s*(?P<unit>s|sec|m|min|h|hour|hours|d|day|days|w|week|weeks)?")


def _count(minimum: int) -> tuple[Callable[[str], object], str]:
    def parse(raw: str) -> int | None:
        return int(raw) if raw.isdigit() and int(raw) >= minimum else None
    return parse, f"a whole number >= {minimum}"


def _matching(pattern: re.Pattern, form: str, empty_ok: bool = True) -> tuple[Callable[[str], object], str]:
    def parse(raw: str) -> str | None:
        return raw if (not raw and empty_ok) or pattern.fullmatch(raw) else None
    return parse, form


def _runtime(raw: str) -> str | int | None:
    match = _RUNTIME.fullmatch(raw)
    if match is None or float(match["number"]) <= 0 or not (match["unit"] or raw.isdigit()):
        return None
    return int(raw) if raw.isdigit() else raw


_RUNTIME_FORM = "minutes > 0 (e.g. 90) or a number with a unit s, m, h, d or w (e.g. 45m, 12h, 2d)"
# name -> (parser returning the value or None when refused, the accepted form in words)
SITE_VALUES: dict[str, tuple[Callable[[str], object], str]] = {
    "PARTITION": _matching(_NAMES, "a partition name or a comma-separated list of them (letters, digits, _ . -), "
                                   "or empty for the cluster's default"),
    "ACCOUNT": _matching(_NAME, "an account name (letters, digits, _ . -), or empty for your default account"),
    "GPUS": _count(0),
    "GPU_MODEL": _matching(_NAME, "a GPU model name such as a100 (letters, digits, _ . -), or empty for any"),
    "TRAIN_CPUS": _count(1),
    "TRAIN_MEM_MB": _count(1),
    "TRAIN_RUNTIME": (_runtime, _RUNTIME_FORM),
    "EVALUATE_CPUS": _count(1),
    "EVALUATE_MEM_MB": _count(1),
    "EVALUATE_RUNTIME": (_runtime, _RUNTIME_FORM),
    "EVALUATE_GROUP": _count(1),
    "JOBS": _count(1),
    "STATUS_COMMAND": _matching(re.compile("|".join(STATUS_COMMANDS)),
                                f"one of {', '.join(STATUS_COMMANDS)}, or empty to probe"),
}


def _parse(name: str, raw: str, where: str) -> object:
    parse, form = SITE_VALUES[name]
    value = parse(raw)
    if value is None:
        raise WMoEError(f"{where}={raw!r}: expected {form}")
    return value


def check_environment() -> None:
    """Refuse any ``$WMOE_SLURM_*`` that is not a site value or whose value is not of its accepted form."""
    for var in sorted(os.environ):
        if not var.startswith(ENV_PREFIX):
            continue
        name = var[len(ENV_PREFIX):]
        if name not in SITE_VALUES:
            raise WMoEError(f"${var}: not a site value of the SLURM profile; the names are "
                            f"{', '.join(ENV_PREFIX + n for n in SITE_VALUES)}")
        raw = os.environ[var].strip()
        if raw:
            _parse(name, raw, "$" + var)


def site(name: str, default: str | int) -> str | int:
    """``$WMOE_SLURM_<name>`` when set (non-empty), else ``default``; either checked against its accepted form."""
    var = ENV_PREFIX + name
    raw = os.environ.get(var, "").strip()
    if raw:
        return _parse(name, raw, "$" + var)
    if str(default):
        return _parse(name, str(default), f"the profile's default for {var}")
    return default


def status_command(timeout_s: float = 10.0) -> str:
    """How the executor plugin polls job states: ``sacct`` when the cluster's accounting answers,
    else ``squeue`` (a cluster without slurmdbd, where ``sacct`` exists but fails).

    The plugin itself picks ``sacct`` whenever the binary is installed, and then never learns that a
    job finished on such a cluster. ``$WMOE_SLURM_STATUS_COMMAND`` forces either one.
    """
    forced = site("STATUS_COMMAND", "")
    if forced:
        return forced
    if shutil.which("sacct") is None:
        return "squeue"
    try:
        probe = subprocess.run(["sacct", "--noheader", "--allocations", "--starttime", "now", "--format", "JobIDRaw"],
                               capture_output=True, timeout=timeout_s, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "squeue"
    return "sacct" if probe.returncode == 0 else "squeue"
