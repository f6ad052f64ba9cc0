"""DVC's view of the workflow: params composed from config/dvc/ as `dvc exp run` does, and the
stages dvc.yaml expands to with them."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from snakemake_util import REPO

# The same environment as CI: no usage reports, no interactive prompts.
DVC_ENV = {"DVC_NO_ANALYTICS": "1", "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "1"}


def compose_params(*overrides: str, root: Path = REPO) -> dict:
    """params.yaml as `dvc exp run -S OVERRIDE ...` composes it in ``root`` (Hydra, config/dvc/)."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    with initialize_config_dir(config_dir=str(root / "config" / "dvc"), version_base=None):
        return OmegaConf.to_container(compose(config_name="config", overrides=list(overrides)), resolve=True)


def dvc_stages(params: dict, root: Path) -> list:
    """The stages of the project's dvc.yaml with ``params`` as params.yaml, read in ``root``."""
    from dvc.repo import Repo

    root.mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "dvc.yaml", root / "dvc.yaml")
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    if not (root / ".dvc").is_dir():
        Repo.init(str(root), no_scm=True).close()
    with Repo(str(root)) as repo:
        return list(repo.index.stages)


# A small DVC setup for the end-to-end tests: the demo's synthetic data and tiny model on two datasets
# and one variant (one training, one evaluation: the smallest DAG from data to report), one epoch, no
# custom target, no baseline. Standalone, not `defaults: [demo]`: a setup's mappings merge over the one it names,
# so the demo's custom target could not be dropped.
SUBSET_SETUP = """\
# @package _global_
datasets: [visa, mvtec]
sources: [visa]
variants: [full]
main_cells: [{source: visa, target: mvtec, options: {}}]
ablation_cells: []
ablation_variants: []
paths: {resources: resources/demo, results: results/demo, reports: reports/demo}
data: {source: synth, args: {size: 2, seed: 0}}
prepare: {strict: false}
weights: []
main_targets: [{name: mvtec, options: {}}]
run_config:
  set:
    train: {epochs: 1, num_workers: 0}
    eval: {num_workers: 0, figure_samples: 4}
run_configs:
  wmoe_clip: {base: tiny, input: src/wmoe_clip/model/wmoe_clip/configs/tiny.yaml, set: {}}
trained_baselines: []
untrained_baselines: []
mlflow: {experiment: dvc-subset}
custom_targets: {}
custom_synth: {}
"""


def fresh_clone(root: Path) -> Path:
    """``root`` as a fresh clone of the working tree (tracked and new files, nothing ignored), with
    the setup ``subset`` added to config/dvc/setup/ and committed."""
    listing = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                             capture_output=True, check=True).stdout.decode()
    for name in filter(None, listing.split("\0")):
        if (REPO / name).is_file():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, root / name)
    (root / "config" / "dvc" / "setup" / "subset.yaml").write_text(SUBSET_SETUP)
    for command in (["init", "-q"], ["config", "user.name", "wmoe-clip tests"],
                    ["config", "user.email", "tests@wmoe-clip.invalid"], ["add", "-A"], ["commit", "-q", "-m", "clone"]):
        subprocess.run(["git", *command], cwd=root, check=True, capture_output=True)
    return root


def dvc(root: Path, *args: str, env: dict | None = None) -> str:
    """Run ``dvc ARGS`` in ``root`` with the project's environment first on PATH; its output."""
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    proc = subprocess.run([str(Path(sys.executable).parent / "dvc"), *args], cwd=root, capture_output=True,
                          text=True, timeout=900, env={**os.environ, **DVC_ENV, "PATH": path, **(env or {})})
    if proc.returncode != 0:
        raise AssertionError(f"dvc {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc.stdout + proc.stderr


def stages_run(output: str) -> set[str]:
    """Stages a `dvc repro` / `dvc exp run` ran, from its "Running stage 'NAME':" lines."""
    return set(re.findall(r"^Running stage '([^']+)':", output, re.M))
