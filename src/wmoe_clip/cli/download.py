"""``wmoe-clip download DATASET --dest DIR`` and ``wmoe-clip download-weights --dest DIR``."""

from __future__ import annotations

import argparse

from ..data import registry, weights


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "download",
        help="download, verify and extract a dataset (or check a manually placed copy)",
        description="Fetch DATASET's archives into DIR/.downloads (resumable, sha256-checked), extract them "
        "safely and write DIR/download.json once complete. Datasets behind a login are placed by hand: "
        "the command checks them or says where to put them.",
    )
    p.add_argument("dataset", choices=registry.keys(), metavar="DATASET", help=", ".join(registry.keys()))
    p.add_argument("--dest", required=True, help="raw dataset folder, e.g. resources/raw/DATASET")
    p.add_argument("--url-base", default=None,
                   help="mirror: fetch every file from URL_BASE/<filename> instead of the registry URL")
    p.add_argument("--force", action="store_true", help="download and extract again even if DIR is complete")
    _network_options(p)
    p.set_defaults(func=run_download)

    w = subparsers.add_parser(
        "download-weights",
        help="download a backbone's CLIP weights for offline use",
        description="Fetch the CLIP weights of a backbone named by open_clip's registry (OpenAI's ViT-L/14@336px, "
        "or LAION-400M's ViT-B-16-plus-240 for winclip), verify their sha256 and write a state dict into DIR "
        "(vit_l14_336_openai.pt, vit_b16_plus_240_laion400m_e31.pt) that model.pretrained can point to.",
    )
    w.add_argument("--dest", required=True, help="folder for the weights, e.g. resources/weights")
    w.add_argument("--backbone", default=weights.MODEL, choices=sorted(weights.SOURCES),
                   help="whose weights (model.backbone; default %(default)s)")
    w.add_argument("--url", default=None, help="mirror URL of the weights file (needs --sha256)")
    w.add_argument("--sha256", default=None, help="expected sha256 of the file at --url")
    w.add_argument("--anomalyclip", action="store_true",
                   help="also fetch AnomalyCLIP's two released checkpoints (official repository, fixed commit, "
                   "verified by git blob id) into DIR/anomalyclip/, or check copies placed there by hand: "
                   "9_12_4_multiscale/epoch_15.pth (trained on VisA) and 9_12_4_multiscale_visa/epoch_15.pth "
                   "(trained on MVTec AD)")
    w.add_argument("--anomalyclip-url-base", default=None, metavar="URL",
                   help="mirror of the AnomalyCLIP repository: fetch URL/checkpoints/... instead of GitHub")
    w.add_argument("--skip-clip", action="store_true", help="do not fetch the CLIP weights (with --anomalyclip)")
    _network_options(w)
    w.set_defaults(func=run_download_weights)


def _network_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--stall-timeout", type=float, default=60.0, metavar="SECONDS",
                   help="drop a connection that delivers no data for this long, then retry (default %(default)g)")
    p.add_argument("--retries", type=int, default=5,
                   help="retries after a dropped or stalled connection, for the whole command (default %(default)s)")


def _budget(args: argparse.Namespace):
    from ..data.download import RetryBudget

    return RetryBudget(retries=args.retries, stall_timeout=args.stall_timeout)


def run_download(args: argparse.Namespace) -> int:
    from ..data.download import download_dataset

    download_dataset(registry.get(args.dataset), args.dest, url_base=args.url_base, force=args.force,
                     budget=_budget(args))
    return 0


def run_download_weights(args: argparse.Namespace) -> int:
    budget = _budget(args)
    if not args.skip_clip:
        weights.download_weights(args.dest, url=args.url, sha256=args.sha256, budget=budget, backbone=args.backbone)
    if args.anomalyclip:
        base = args.anomalyclip_url_base.rstrip("/") if args.anomalyclip_url_base else None
        weights.released_checkpoints(args.dest, raw_base=base or weights.RAW_BASE,
                                     media_base=base or weights.MEDIA_BASE, budget=budget)
    return 0
