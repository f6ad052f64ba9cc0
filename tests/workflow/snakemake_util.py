"""Run the project's Snakemake workflow in a subprocess and read its DAG."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from unittest import mock

REPO = Path(__file__).resolve().parents[2]
SNAKEMAKE = str(Path(sys.executable).parent / "snakemake")


def snakemake(*args: str, check: bool = True, cwd: Path = REPO) -> subprocess.CompletedProcess:
    # The workflow names the user's MLflow store when MLFLOW_TRACKING_URI is set; an in-process test that
    # tracked a run leaves it set (mlflow.set_tracking_uri exports it), so the DAG is read without it.
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_NAME")}
    proc = subprocess.run([SNAKEMAKE, *args], cwd=cwd, capture_output=True, text=True, timeout=600, env=env)
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc


def outputs_by_rule(*args: str, cwd: Path = REPO) -> dict[str, set[str]]:
    """rule -> output files of the whole DAG (every job, finished or not), from --detailed-summary."""
    out = snakemake("--dry-run", "--detailed-summary", *args, cwd=cwd).stdout.splitlines()
    header = next(i for i, line in enumerate(out) if line.startswith("output_file\t"))
    rules: dict[str, set[str]] = {}
    for line in out[header + 1:]:
        fields = line.split("\t")
        if len(fields) >= 3:
            rules.setdefault(fields[2], set()).add(fields[0])
    return rules


def shell_commands(*args: str) -> list[str]:
    """The shell command of every job of a forced dry run (rules without one are left out)."""
    out = snakemake("--dry-run", "--forceall", "--printshellcmds", *args).stdout.splitlines()
    prefix = "Shell command: "
    return [line[len(prefix):] for line in out if line.startswith(prefix) and line != prefix + "None"]


def job_counts(*args: str, cwd: Path = REPO) -> dict[str, int]:
    """rule -> number of jobs of a forced dry run (Snakemake's "Job stats" table)."""
    out = snakemake("--dry-run", "--forceall", *args, cwd=cwd).stdout
    stats = out[out.index("Job stats:"):]
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)$", stats, re.M) if m.group(1) != "total"}


# The evaluate jobs: one rule per target and encoder pass (workflow/rules/evaluate.smk).
EVALUATE_RULE = re.compile(r"^evaluate_(\w+)_([0-9a-f]{12})$")


def rule_kind(rule: str) -> str:
    """`evaluate` for an evaluate job's rule, the rule's name otherwise."""
    return "evaluate" if EVALUATE_RULE.match(rule) else rule


def by_kind(counts: dict[str, int]) -> dict[str, int]:
    """Job counts with every evaluate_{target}_{digest} rule counted as `evaluate`."""
    out: dict[str, int] = {}
    for rule, n in counts.items():
        out[rule_kind(rule)] = out.get(rule_kind(rule), 0) + n
    return out


def slurm_profile(**site: str) -> dict:
    """profiles/slurm/config.yaml as Snakemake renders it (YTE) with these WMOE_SLURM_<NAME> values
    and no others from the environment."""
    import yte

    env = {k: v for k, v in os.environ.items() if not k.startswith("WMOE_SLURM_")}
    env.update({f"WMOE_SLURM_{k}": v for k, v in site.items()})
    with mock.patch.dict(os.environ, env, clear=True):
        return yte.process_yaml((REPO / "profiles" / "slurm" / "config.yaml").read_text(), require_use_yte=True)
