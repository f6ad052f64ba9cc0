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


# A small workflow config for the end-to-end tests, a DVC setup of its own: the demo's synthetic data
# and tiny model on two datasets and one variant (one training, one evaluation: the smallest DAG from
# data to report), one epoch, no custom target, no baseline. Standalone, not over config/config.yaml:
# a merged config keeps the mappings it does not set, so the paper's other sources would stay.
SUBSET_CONFIG = """\
run: dvc-subset
paths: {resources: resources/demo, results: results/demo, reports: reports/demo, logs: logs/demo}
data_source: synth
strict_counts: false
synth_size: 2
model_config: tiny
overrides: {train.epochs: 1, train.num_workers: 0, eval.num_workers: 0, eval.figure_samples: 4}
weights: {download: false}
sources: [visa]
targets: {visa: [mvtec]}
variants: [full]
mlflow: {experiment: dvc-subset}
"""


def fresh_clone(root: Path) -> Path:
    """``root`` as a fresh clone of the working tree (tracked and new files, nothing ignored), with
    the setup ``subset`` of SUBSET_CONFIG added to config/dvc/ by `wmoe-clip dvc-params`, and committed."""
    listing = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                             capture_output=True, check=True).stdout.decode()
    for name in filter(None, listing.split("\0")):
        if (REPO / name).is_file():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, root / name)
    (root / "config" / "subset.yaml").write_text(SUBSET_CONFIG)
    with open(root / "config" / "dvc" / "setups.yaml", "a") as f:
        f.write("subset: [config/subset.yaml]\n")
    subprocess.run([str(Path(sys.executable).parent / "wmoe-clip"), "dvc-params"], cwd=root, check=True,
                   capture_output=True)
    for command in (["init", "-q"], ["config", "user.name", "wmoe-clip tests"],
                    ["config", "user.email", "tests@wmoe-clip.invalid"], ["add", "-A"], ["commit", "-q", "-m", "clone"]):
        subprocess.run(["git", *command], cwd=root, check=True, capture_output=True)
    return root


def evaluate_stages(params: dict) -> set[str]:
    """The names of the evaluate stages of ``params``: one per evaluate job."""
    return {f"evaluate_{size}@{key}" for size, jobs in params["evaluate"].items() for key in jobs}


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
