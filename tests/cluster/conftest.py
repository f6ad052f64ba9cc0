"""The cluster tests run against a real one-node Slurm cluster on this machine, brought up by
slurm_up.sh (Debian's slurm-wlm and munge; needs root). Where it cannot be brought up they skip
with its one-line reason, unless WMOE_REQUIRE_SLURM=1 (set by .ci/run), where that is a failure."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
# The workflow tests' helpers (running Snakemake and DVC on the project).
sys.path.insert(0, str(HERE.parent / "workflow"))

REQUIRE = "WMOE_REQUIRE_SLURM"
PARTITION = "debug"  # the partition slurm_up.sh writes


@pytest.fixture(scope="session")
def slurm_partition() -> str:
    proc = subprocess.run(["bash", str(HERE / "slurm_up.sh")], capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        reason = (proc.stderr.strip().splitlines() or ["slurm_up.sh failed"])[-1]
        if os.environ.get(REQUIRE) == "1":
            pytest.fail(f"{REQUIRE}=1 but no Slurm cluster: {proc.stdout}\n{proc.stderr}")
        pytest.skip(reason)
    return PARTITION


def slurm_history(**filters: str) -> list[dict[str, str]]:
    """Jobs slurmctld still knows (finished ones for MinJobAge): id, state, name, comment, CPUs, memory."""
    fields = {"id": "%i", "state": "%T", "name": "%j", "comment": "%k", "cpus": "%C", "memory": "%m"}
    options = [f"--{k}={v}" for k, v in filters.items()]
    out = subprocess.run(["squeue", "--states=all", "--noheader", "--format", "|".join(fields.values()), *options],
                         capture_output=True, text=True, check=True).stdout
    return [dict(zip(fields, line.split("|"))) for line in out.splitlines() if line.strip()]
