"""``wmoe-clip dvc-params``: write DVC's setups, params.yaml and evaluate stages from the workflow configs."""

from __future__ import annotations

import argparse


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "dvc-params",
        help="write DVC's protocol (config/dvc/setup/*.yaml, params.yaml, dvc.yaml's evaluate stages) from the "
        "workflow configs named in config/dvc/setups.yaml",
        description="Run in the repository's root folder. Each setup of config/dvc/setups.yaml is the protocol of "
        "its workflow config files (merged as Snakemake merges --configfile): its datasets, run configs, trainings "
        "and evaluate jobs. --check writes nothing and fails if a file differs from what would be written.",
    )
    p.add_argument("--check", action="store_true", help="fail if a committed file is stale; write nothing")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..dvc_params import generate, stale
    from ..errors import WMoEError
    from ..io import write_text

    generated = generate()
    changed = stale(generated)
    if args.check:
        if changed:
            raise WMoEError(f"stale: {', '.join(changed)}; run `wmoe-clip dvc-params` and commit the files")
        print("DVC files are up to date with the workflow configs")
        return 0
    for name in changed:
        write_text(name, generated.files[name])
        print(f"wrote {name}")
    return 0
