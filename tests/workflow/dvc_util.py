"""DVC's view of the workflow: params composed from config/dvc/ as `dvc exp run` does, and the
stages dvc.yaml expands to with them."""

from __future__ import annotations

import shutil
from pathlib import Path

import yaml

from snakemake_util import REPO

# The same environment as CI: no usage reports, no interactive prompts.
DVC_ENV = {"DVC_NO_ANALYTICS": "1", "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "1"}


def compose_params(*overrides: str) -> dict:
    """params.yaml as `dvc exp run -S OVERRIDE ...` composes it (Hydra, config/dvc/config.yaml)."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    with initialize_config_dir(config_dir=str(REPO / "config" / "dvc"), version_base=None):
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
