"""Options several subcommands share (a module starting with "_" is no subcommand)."""

from __future__ import annotations

import argparse
import sys

from ..data import registry


def add_model_source(p: argparse.ArgumentParser) -> None:
    """``--checkpoint`` (a trained model) or ``--config`` (the run config of a method that does not train)."""
    group = p.add_mutually_exclusive_group(required=True)
    group.add_argument("--checkpoint", help="model.pt written by wmoe-clip train or wmoe-clip import-checkpoint")
    group.add_argument("--config", help="run config (YAML file or shipped name) of a method that does not train, "
                       "e.g. one with method: clip")


def registry_protocols() -> str:
    """The registry's datasets with several protocols and their names, e.g. ``ksdd2: bayes-pfl, official``."""
    return "; ".join(f"{s.key}: {', '.join(s.protocols)}" for s in registry.all() if s.protocols)


class _DeprecatedProtocol(argparse.Action):
    """``--variant``, the former name of ``--protocol``: still accepted, with a one-line note."""

    def __call__(self, parser, namespace, values, option_string=None):
        print(f"note: {option_string} is now --protocol (--variant names the model variants of train); "
              "it still works here", file=sys.stderr)
        setattr(namespace, self.dest, values)


def add_protocol(p: argparse.ArgumentParser, help: str) -> None:  # noqa: A002 - argparse's name
    """``--protocol NAME`` (a dataset protocol), and ``--variant`` as its deprecated alias."""
    p.add_argument("--protocol", help=help)
    p.add_argument("--variant", dest="protocol", action=_DeprecatedProtocol, help=argparse.SUPPRESS)
