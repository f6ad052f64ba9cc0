"""DVC validates the composed params before its first stage, as Snakemake does when it builds its DAG:
`dvc exp run -S run_config.set.train.epochs=0` stops at the check, before any data stage."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import networkx as nx
import pytest
import yaml

from dvc_util import DVC_ENV, compose_params, dvc_stages
from snakemake_util import REPO


@pytest.mark.parametrize("setup", ["paper", "demo"])
def test_every_stage_runs_after_the_params_check(tmp_path, setup):
    from dvc.repo import Repo

    dvc_stages(compose_params(f"setup={setup}"), tmp_path)
    with Repo(str(tmp_path)) as repo:
        stages, graph = list(repo.index.stages), repo.index.graph
        check = next(s for s in stages if s.name == "check_params")
        # A stage's descendants in DVC's graph are what it depends on.
        assert [s.name for s in stages if s is not check and check not in nx.descendants(graph, s)] == []
        assert not list(graph.successors(check))


def _repro(root: Path, *args: str) -> subprocess.CompletedProcess:
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, **DVC_ENV, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.run([str(bin_dir / "dvc"), "repro", *args], cwd=root, capture_output=True, text=True,
                          timeout=300, env=env)


def _repo(root: Path, params: dict) -> Path:
    from dvc.repo import Repo

    root.mkdir()
    shutil.copy(REPO / "dvc.yaml", root / "dvc.yaml")
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    Repo.init(str(root), no_scm=True).close()
    return root


def test_a_bad_training_value_stops_dvc_before_the_first_data_stage(tmp_path):
    params = compose_params("setup=demo", "run_config.set.train.epochs=0")
    root = _repo(tmp_path / "repo", params)
    before = {p.relative_to(root).as_posix() for p in root.rglob("*") if ".dvc" not in p.parts}
    proc = _repro(root)
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "Running stage 'check_params'" in output
    assert "Running stage" not in output.replace("Running stage 'check_params'", "")
    assert ("wmoe-clip check-params: error: params.yaml: the run config of wmoe_clip: train.epochs must be at least "
            "1, got 0; nothing has run") in output
    after = {p.relative_to(root).as_posix() for p in root.rglob("*") if ".dvc" not in p.parts}
    assert after - before <= {"dvc.lock", ".dvcignore"}  # no dataset, no result, no marker


def test_a_valid_change_passes_the_check_without_touching_its_marker(tmp_path):
    params = compose_params("setup=demo")
    root = _repo(tmp_path / "repo", params)
    assert _repro(root, "check_params").returncode == 0
    marker = root / params["paths"]["results"] / "check" / "params.txt"
    first = marker.read_bytes()
    params["run_config"]["set"]["train"]["lr"] = 0.002
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    proc = _repro(root, "check_params")
    assert proc.returncode == 0 and "Running stage 'check_params'" in proc.stdout
    # Unchanged text: the stages that depend on the marker see no change through it.
    assert marker.read_bytes() == first
