"""Site values of the SLURM profile and the choice of the job-status command."""

from __future__ import annotations

import pytest

from wmoe_clip.errors import WMoEError
from wmoe_clip.slurm import site, status_command


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
    with pytest.raises(WMoEError, match="sacct, squeue"):
        status_command()
