"""Site values of the SLURM profile and the choice of the job-status command."""

from __future__ import annotations

import os
from pathlib import Path
from unittest import mock

import pytest
import yte
from yte.exceptions import YteError

from wmoe_clip.errors import WMoEError
from wmoe_clip.slurm import site, status_command

PROFILE = Path(__file__).resolve().parents[1] / "profiles" / "slurm" / "config.yaml"


def _load_profile(**values: str) -> dict:
    """The SLURM profile as Snakemake renders it, with only these WMOE_SLURM_<NAME> values set
    (and the status command forced, so that no ``sacct`` is probed)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WMOE_SLURM_")}
    env.update({"WMOE_SLURM_STATUS_COMMAND": "squeue"} | {f"WMOE_SLURM_{k}": v for k, v in values.items()})
    with mock.patch.dict(os.environ, env, clear=True):
        return yte.process_yaml(PROFILE.read_text(), require_use_yte=True)


def test_site_value_from_the_environment_with_the_default_type(monkeypatch):
    monkeypatch.delenv("WMOE_SLURM_TRAIN_CPUS", raising=False)
    assert site("TRAIN_CPUS", 4) == 4
    monkeypatch.setenv("WMOE_SLURM_TRAIN_CPUS", " 16 ")
    assert site("TRAIN_CPUS", 4) == 16
    monkeypatch.setenv("WMOE_SLURM_PARTITION", "gpu-long")
    assert site("PARTITION", "") == "gpu-long"
    monkeypatch.setenv("WMOE_SLURM_PARTITION", "")
    assert site("PARTITION", "debug") == "debug"


@pytest.mark.parametrize("bad", ["eight", "-1", "2.5"])
def test_a_count_that_is_not_a_whole_number_is_named(monkeypatch, bad):
    monkeypatch.setenv("WMOE_SLURM_GPUS", bad)
    with pytest.raises(WMoEError, match=f"WMOE_SLURM_GPUS={bad!r}"):
        site("GPUS", 1)


@pytest.mark.parametrize(("name", "value", "form"), [
    ("EVALUATE_GROUP", "0", "a whole number >= 1"),
    ("JOBS", "0", "a whole number >= 1"),
    ("TRAIN_CPUS", "0", "a whole number >= 1"),
    ("EVALUATE_CPUS", "0", "a whole number >= 1"),
    ("TRAIN_MEM_MB", "16G", "a whole number >= 1"),
    ("GPUS", "one", "a whole number >= 0"),
    ("TRAIN_RUNTIME", "abc", "minutes > 0"),
    ("EVALUATE_RUNTIME", "0h", "minutes > 0"),
    ("EVALUATE_RUNTIME", "1.5", "minutes > 0"),
    ("PARTITION", "gpu long", "a partition name"),
    ("ACCOUNT", "lab;rm", "an account name"),
    ("GPU_MODEL", "a100:2", "a GPU model name"),
    ("STATUS_COMMAND", "scontrol", "one of sacct, squeue"),
])
def test_a_bad_site_value_is_refused_when_the_profile_loads(name, value, form):
    with pytest.raises(YteError) as raised:
        _load_profile(**{name: value})
    message = str(raised.value)
    assert f"$WMOE_SLURM_{name}={value!r}: expected {form}" in message
    assert "\n" not in message


def test_a_misspelt_site_variable_is_refused_with_the_names():
    with pytest.raises(YteError, match=r"\$WMOE_SLURM_PARTITON: not a site value .* WMOE_SLURM_PARTITION, "):
        _load_profile(PARTITON="gpu")


def test_the_accepted_forms_reach_the_profile():
    profile = _load_profile(PARTITION="gpu,gpu-long", ACCOUNT="my.lab", GPUS="0", TRAIN_CPUS="1", JOBS="1",
                            EVALUATE_GROUP="3", TRAIN_RUNTIME="90", EVALUATE_RUNTIME="45m")
    assert profile["default-resources"]["slurm_partition"] == "gpu,gpu-long"
    assert profile["default-resources"]["slurm_account"] == "my.lab"
    assert profile["set-resources"]["train"]["gpu"] == 0
    assert profile["set-resources"]["train"]["runtime"] == 90
    assert profile["set-resources"]["evaluate"]["runtime"] == "45m"
    assert profile["set-threads"]["train"] == 1
    assert profile["jobs"] == 1
    assert profile["group-components"]["evaluate"] == 3


def test_a_bad_default_written_in_the_profile_is_refused(monkeypatch):
    monkeypatch.delenv("WMOE_SLURM_JOBS", raising=False)
    with pytest.raises(WMoEError, match="the profile's default for WMOE_SLURM_JOBS='0': expected a whole number >= 1"):
        site("JOBS", 0)


def _fake_sacct(tmp_path, monkeypatch, script: str | None):
    """PATH holding only a `sacct` that runs ``script`` (none at all for None)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    if script is not None:
        sacct = bin_dir / "sacct"
        sacct.write_text(f"#!/bin/sh\n{script}\n")
        sacct.chmod(0o755)
    monkeypatch.setenv("PATH", str(bin_dir))
    monkeypatch.delenv("WMOE_SLURM_STATUS_COMMAND", raising=False)


@pytest.mark.parametrize(("script", "expected"), [
    (None, "squeue"),                                                      # no accounting tools
    ("exit 0", "sacct"),                                                   # slurmdbd answers
    ("echo 'Slurm accounting storage is disabled' >&2; exit 1", "squeue"),  # sacct without slurmdbd
    ("exec /bin/sleep 5", "squeue"),                                       # slurmdbd not answering
], ids=["no-sacct", "accounting", "no-accounting", "hanging"])
def test_status_command_is_sacct_only_when_accounting_answers(tmp_path, monkeypatch, script, expected):
    _fake_sacct(tmp_path, monkeypatch, script)
    assert status_command(timeout_s=0.5) == expected


def test_status_command_can_be_forced(tmp_path, monkeypatch):
    _fake_sacct(tmp_path, monkeypatch, "exit 0")
    monkeypatch.setenv("WMOE_SLURM_STATUS_COMMAND", "squeue")
    assert status_command() == "squeue"
    monkeypatch.setenv("WMOE_SLURM_STATUS_COMMAND", "scontrol")
    with pytest.raises(WMoEError, match="one of sacct, squeue"):
        status_command()
