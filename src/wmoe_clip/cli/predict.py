"""``wmoe-clip predict``: anomaly scores and heatmaps for loose image files."""

from __future__ import annotations

import argparse

from ..errors import WMoEError
from ._options import add_model_source


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "predict",
        help="score image files with a model (scores as JSON/CSV, heatmap overlays as PNG)",
        description="Score each IMAGE with the model in CHECKPOINT (or of the run config of a method that does "
        "not train). Writes OUT/scores.json, OUT/scores.csv "
        "(every input with its status) and OUT/heatmaps/*.png (replaced as a whole). Unreadable files, "
        "anything that is not a regular file and images over --max-pixels (JPEGs are decoded at a "
        "reduced scale instead when that fits) are reported and skipped; the exit status is 1 when some "
        "were skipped and 2 when none could be read.",
    )
    add_model_source(p)
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--max-pixels", type=int, help="most pixels decoded per image (default: 50 million)")
    p.add_argument("--force", action="store_true", help="replace files at OUT/scores.json and OUT/scores.csv that "
                   "predict did not write (never an input)")
    p.add_argument("--class-name", help="the images' class name, for a method whose prompts name it (clip)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..engine.predict import DEFAULT_MAX_PIXELS, predict

    max_pixels = DEFAULT_MAX_PIXELS if args.max_pixels is None else args.max_pixels
    rows = predict(args.checkpoint, args.images, args.out, max_pixels=max_pixels, config=args.config,
                   class_name=args.class_name, force=args.force)
    failed = sum(r["status"] == "skipped" for r in rows)
    if failed == len(rows):
        raise WMoEError(f"none of the {len(rows)} file(s) could be read as an image; see {args.out}/scores.csv")
    for r in rows:
        if r["status"] == "scored":
            print(f"{r['image_score']:.4f}  {r['path']}" + (f"  ({r['note']})" if r["note"] else ""))
    print(f"scored {len(rows) - failed} image(s), skipped {failed}; results in {args.out}")
    return 1 if failed else 0
