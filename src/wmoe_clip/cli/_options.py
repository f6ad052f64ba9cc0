"""Options several subcommands share (a module starting with "_" is no subcommand)."""

from __future__ import annotations

import argparse


def add_model_source(p: argparse.ArgumentParser) -> None:
    """``--checkpoint`` (a trained model) or ``--config`` (the run config of a method that does not train)."""
    group = p.add_mutually_exclusive_group(required=True)
    group.add_argument("--checkpoint", help="model.pt written by wmoe-clip train or wmoe-clip import-checkpoint")
    group.add_argument("--config", help="run config (YAML file or shipped name) of a method that does not train, "
                       "e.g. one with method: clip")
