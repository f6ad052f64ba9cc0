"""Site values of the SLURM profile (``profiles/slurm/config.yaml``) and its job-status command.

The profile is a YTE template (Snakemake renders it when it loads the profile) that takes every site
value from :func:`site`: ``$WMOE_SLURM_<NAME>`` when set, else the default written in the profile.
So a site edits the defaults in one block of the profile, or overrides any of them per command:
``WMOE_SLURM_PARTITION=gpu WMOE_SLURM_ACCOUNT=lab snakemake --profile profiles/slurm ...``.
"""

from __future__ import annotations

import os
import shutil
import subprocess

from .errors import WMoEError

ENV_PREFIX = "WMOE_SLURM_"
STATUS_COMMANDS = ("sacct", "squeue")


def site(name: str, default: str | int) -> str | int:
    """``$WMOE_SLURM_<name>`` as the type of ``default`` (a count >= 0 for an int), else ``default``."""
    var = ENV_PREFIX + name
    raw = os.environ.get(var, "").strip()
    if not raw:
        return default
    if isinstance(default, int):
        if not raw.isdigit():
            raise WMoEError(f"${var}={raw!r}: expected a whole number >= 0 (the profile's default is {default})")
        return int(raw)
    return raw


def status_command(timeout_s: float = 10.0) -> str:
    """How the executor plugin polls job states: ``sacct`` when the cluster's accounting answers,
    else ``squeue`` (a cluster without slurmdbd, where ``sacct`` exists but fails).

    The plugin itself picks ``sacct`` whenever the binary is installed, and then never learns that a
    job finished on such a cluster. ``$WMOE_SLURM_STATUS_COMMAND`` forces either one.
    """
    forced = site("STATUS_COMMAND", "")
    if forced:
        if forced not in STATUS_COMMANDS:
            raise WMoEError(f"$WMOE_SLURM_STATUS_COMMAND={forced!r}: expected one of {', '.join(STATUS_COMMANDS)}")
        return forced
    if shutil.which("sacct") is None:
        return "squeue"
    try:
        probe = subprocess.run(["sacct", "--noheader", "--allocations", "--starttime", "now", "--format", "JobIDRaw"],
                               capture_output=True, timeout=timeout_s, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "squeue"
    return "sacct" if probe.returncode == 0 else "squeue"
