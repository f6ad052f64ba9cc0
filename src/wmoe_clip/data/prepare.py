"""``prepare``: convert a dataset in its native layout into ``OUT_DIR/meta.json``.

Steps: find the dataset root inside RAW_DIR (descending through a single wrapping folder) and, for a
dataset with several protocols, which protocol's layout it holds (``--protocol`` overrides), run the
dataset module's converter, decode every image and mask (unreadable files, empty or mis-sized masks are problems),
compare the counts with the registry, build the mask value histogram, and write ``prepare.json``
(the report) and ``meta.json`` as a pair at the very end (both staged first, then moved into place,
``meta.json`` last); ``meta.json`` existing means done. A run that fails leaves the previous pair as
it was, so a good manifest is never lost to a failed rerun and a ``prepare.json`` always describes
the ``meta.json`` beside it.

Problems (a missing mask, an orphan mask, a corrupt image, a stray folder) are an error naming the
files, or with ``skip_bad`` warnings with the files left out and listed in the report. Registry
classes that are absent (a partial download: MVTec AD comes one archive per class) are left out and
listed; they and count differences from the registry are an error with ``strict``.

``prepare_custom`` does the same for a user's own dataset (``data.custom``): no registry counts, its
spec (classes, metric levels) derived from what was found and stored in ``meta.json``.
"""

from __future__ import annotations

import os
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from tqdm import tqdm

from ..errors import WMoEError
from ..io import check_output, check_writable, json_text, write_files
from . import datasets, registry
from .convert import Context, Layout, Problem, Splits, visible_entries
from .datasets import Protocol
from .images import ImageTooLarge, read_image
from .masks import mask_values
from .meta import META_FILE, custom_block, validate
from .registry import DatasetSpec

REPORT_FILE = "prepare.json"
MAX_WRAPPERS = 3  # nested single folders to descend (archive/name/name)
SHOW_PROBLEMS = 10


@dataclass
class PrepareResult:
    meta_path: Path
    report: dict[str, Any]
    differences: list[str] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    # Registry classes absent from RAW_DIR (a partial download), and warnings (``Context.warnings``).
    missing_classes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def _locate(raw_dir: Path, layout: Layout, spec: DatasetSpec) -> tuple[Path | None, Path]:
    """(dataset root or None, the folder the search ended in); several candidates are an error."""
    here = raw_dir
    for _ in range(MAX_WRAPPERS + 1):
        for name in layout.root_names:
            if (here / name).is_dir() and layout.matches(here / name, spec):
                return here / name, here
        if layout.matches(here, spec):
            return here, here
        subdirs = [p for p in visible_entries(here) if p.is_dir()]
        if len(subdirs) != 1:
            break
        here = subdirs[0]
    named = _named_roots(raw_dir, layout, spec)
    if len(named) > 1:
        listed = ", ".join(str(p) for p in named)
        raise WMoEError(f"{spec.key}: {raw_dir} holds several candidate dataset roots ({listed}); "
                        "pass the one to use as --raw")
    return (named[0] if named else None), here


def _check_raw_dir(raw_dir: Path, spec: DatasetSpec) -> None:
    if not raw_dir.is_dir():
        raise WMoEError(f"{spec.key}: raw folder {raw_dir} does not exist. {_how_to_get(spec)}")


def _not_found(raw_dir: Path, here: Path, spec: DatasetSpec, expected: str) -> WMoEError:
    found = ", ".join(p.name for p in visible_entries(here)) or "nothing"
    return WMoEError(
        f"{spec.key}: {raw_dir} does not hold the native layout of {spec.display_name} "
        f"(expected {expected}); {here} holds: {found}. {_how_to_get(spec)}"
    )


def find_root(raw_dir: Path, layout: Layout, spec: DatasetSpec) -> Path:
    """The dataset root: RAW_DIR, a folder of ``layout.root_names`` in it, or inside single wrapping folders.

    Failing that, a folder of ``layout.root_names`` a few levels down is taken when it is the only one
    (a pack of several datasets, e.g. PraNet's ``TestDataset/`` + ``TrainDataset/``).
    """
    _check_raw_dir(raw_dir, spec)
    root, here = _locate(raw_dir, layout, spec)
    if root is None:
        raise _not_found(raw_dir, here, spec, layout.describe(spec))
    return root


def resolve_protocol(key: str, raw_dir: Path, protocol: str | None = None) -> tuple[DatasetSpec, Protocol, Path]:
    """(spec, protocol, dataset root) of the protocol RAW_DIR holds.

    With ``protocol`` given, that one (its layout must be found); otherwise the first protocol, in the
    registry's order, whose layout is found.
    """
    protocols = datasets.protocols(key)
    if protocol is not None:
        spec = registry.get(key, protocol)
        return spec, protocols[protocol], find_root(raw_dir, protocols[protocol].layout, spec)
    specs = {name: registry.get(key, name) for name in protocols}
    _check_raw_dir(raw_dir, specs[next(iter(protocols))])
    for name, found in protocols.items():
        root, here = _locate(raw_dir, found.layout, specs[name])
        if root is not None:
            return specs[name], found, root
    expected = " | ".join(f"{p.layout.describe(specs[n])}" + (f" (protocol {n})" if n else "")
                          for n, p in protocols.items())
    raise _not_found(raw_dir, here, specs[next(iter(protocols))], expected)


def _named_roots(raw_dir: Path, layout: Layout, spec: DatasetSpec) -> list[Path]:
    """Folders called one of ``layout.root_names`` that hold the layout, up to MAX_WRAPPERS + 1 levels down."""
    found, level = [], [raw_dir]
    for _ in range(MAX_WRAPPERS + 1):
        level = [p for d in level for p in visible_entries(d) if p.is_dir()]
        found += [p for p in level if p.name in layout.root_names and layout.matches(p, spec)]
    return found


def _how_to_get(spec: DatasetSpec) -> str:
    if spec.download.manual:
        return spec.download.manual
    return f"Run `wmoe-clip download {spec.key} --dest RAW_DIR` or extract the official archive there."


def _check_record(root: Path, rec: dict, threshold: int) -> tuple[list[Problem], Counter, list[str]]:
    """Decode one record's image and mask as the loader reads them (``data.images``); returns its
    problems, the mask's value histogram and the files read rotated by their EXIF orientation."""
    problems, hist, oriented = [], Counter(), []
    try:
        image = read_image(root / rec["img_path"])
    except ImageTooLarge as exc:
        return [Problem("image too large", rec["img_path"], str(exc))], hist, oriented
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        return [Problem("unreadable image", rec["img_path"], f"cannot be decoded ({exc})")], hist, oriented
    if image.orientation != 1:
        oriented.append(rec["img_path"])
    if not rec["mask_path"]:
        return problems, hist, oriented
    try:
        decoded = read_image(root / rec["mask_path"])
    except (ImageTooLarge, OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        return [Problem("unreadable mask", rec["mask_path"], f"cannot be decoded ({exc})")], hist, oriented
    if decoded.orientation != 1:
        oriented.append(rec["mask_path"])
    mask = mask_values(decoded.image)  # as the loader reads it: palette by colour, alpha ignored
    values, counts = np.unique(mask, return_counts=True)
    hist.update(dict(zip(values.tolist(), counts.tolist())))
    if decoded.size != image.size:
        shape = f"{decoded.size[0]}x{decoded.size[1]} but its image is {image.size[0]}x{image.size[1]}"
        if image.orientation != decoded.orientation:
            shape += (f" (after their EXIF orientations, image {image.orientation}, mask {decoded.orientation}, "
                      "as a viewer shows them)")
        problems.append(Problem("mask size", rec["mask_path"], shape))
    elif not (mask > threshold).any():
        empty = f"no pixel above {threshold} for the anomalous image {rec['img_path']}"
        problems.append(Problem("empty mask", rec["mask_path"], empty))
    return problems, hist, oriented


def _count(records: list[dict]) -> list[int]:
    n_anomalous = sum(r["anomaly"] for r in records)
    return [len(records) - n_anomalous, n_anomalous]


def compare_counts(spec: DatasetSpec, test: dict[str, list[dict]]) -> tuple[dict[str, Any], list[str]]:
    """Per-class and total test counts against the registry; returns (table, human-readable differences).

    With registry classes missing, the total is compared over the classes present (when their counts
    are published) and the missing classes are one difference.
    """
    table, diffs = {}, []
    missing = [c for c in spec.classes if c not in test]
    for cls in list(spec.classes) + [c for c in test if c not in spec.classes]:
        expected = spec.classes.get(cls)
        found = _count(test[cls]) if cls in test else None
        table[cls] = {"expected": list(expected) if expected else None, "found": found}
        if cls not in spec.classes:
            diffs.append(f"class {cls!r} is not in the registry ({len(test[cls])} images)")
        elif found is not None and expected is not None and tuple(found) != expected:
            diffs.append(
                f"{cls}: expected {expected[0]} normal / {expected[1]} anomalous, found {found[0]} / {found[1]}"
            )
    if missing:
        diffs.append(f"{len(missing)} of {len(spec.classes)} classes missing: {', '.join(missing)}")
    present = [spec.classes[c] for c in spec.classes if c in test]
    expected_total: tuple[int, int] | None = spec.totals
    if missing:
        expected_total = None if None in present else (sum(c[0] for c in present), sum(c[1] for c in present))
    total = [sum(_count(r)[i] for r in test.values()) for i in (0, 1)]
    if expected_total is not None and tuple(total) != expected_total:
        which = f" (the {len(present)} classes present)" if missing else ""
        diffs.append(f"total{which}: expected {expected_total[0]} normal / {expected_total[1]} anomalous, "
                     f"found {total[0]} / {total[1]}")
    return {"per_class": table, "total": {"expected": list(expected_total) if expected_total else None,
                                          "found": total}}, diffs


def _records(splits: Splits) -> list[dict]:
    return [r for split in splits.values() for recs in split.values() for r in recs]


def _class_levels(test: dict[str, list[dict]]) -> dict[str, list[str]]:
    """The metric levels that apply to each class: image with both labels, pixel with a mask."""
    return {cls: [lvl for lvl, on in (("image", len({r["anomaly"] for r in recs}) == 2),
                                      ("pixel", any(r["mask_path"] for r in recs))) if on]
            for cls, recs in test.items()}


def prepare(
    key: str, raw_dir: str | os.PathLike, out_dir: str | os.PathLike, strict: bool = False, skip_bad: bool = False,
    progress: bool = True, protocol: str | None = None, force: bool = False,
) -> PrepareResult:
    """Convert dataset ``key`` from ``raw_dir`` into ``out_dir/meta.json`` (+ ``prepare.json``); ``force``
    replaces files at their paths that are not earlier outputs of prepare (never one of the raw data)."""
    raw_dir, out_dir = Path(raw_dir), Path(out_dir)
    _check_outputs(out_dir, (raw_dir,), force)
    spec, found, root = resolve_protocol(key, raw_dir, protocol)
    ctx = Context(root=root, spec=spec)
    splits = found.convert(ctx)
    return _finish(ctx, splits, raw_dir, out_dir, strict=strict, skip_bad=skip_bad, progress=progress)


def prepare_custom(
    name: str, out_dir: str | os.PathLike, raw: str | os.PathLike | None = None,
    csv_path: str | os.PathLike | None = None, skip_bad: bool = False, progress: bool = True, force: bool = False,
) -> PrepareResult:
    """Convert a user's dataset (a folder ``raw`` or a CSV ``csv_path``) into ``out_dir/meta.json``."""
    from .custom import convert_custom

    out_dir = Path(out_dir)
    # A CSV names files relative to its own folder: that folder is read too.
    inputs = (raw,) if raw is not None else (csv_path, Path(csv_path).parent) if csv_path is not None else ()
    _check_outputs(out_dir, inputs, force)
    ctx, splits = convert_custom(registry.check_custom_name(name), Path(raw) if raw is not None else None,
                                 Path(csv_path) if csv_path is not None else None)
    return _finish(ctx, splits, ctx.root, out_dir, strict=False, skip_bad=skip_bad, progress=progress)


def _check_outputs(out_dir: Path, inputs: tuple, force: bool) -> None:
    check_writable(out_dir, "--out", folder=True)
    check_output(out_dir / META_FILE, "--out", "meta", inputs=inputs, force=force)
    check_output(out_dir / REPORT_FILE, "--out", "prepare-report", inputs=inputs, force=force)


def _finish(ctx: Context, splits: Splits, raw_dir: Path, out_dir: Path, *, strict: bool, skip_bad: bool,
            progress: bool) -> PrepareResult:
    """Check every record, then write prepare.json and meta.json together (nothing when something is wrong)."""
    spec, root, key = ctx.spec, ctx.root, ctx.spec.key
    records = _records(splits)
    with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
        checks = list(tqdm(
            pool.map(lambda r: _check_record(root, r, spec.mask_threshold), records),
            total=len(records), desc=f"prepare {key}", unit="img", disable=not progress, leave=False,
        ))
    hist: Counter = Counter()
    bad_paths, oriented = set(), []
    for rec, (problems, h, rotated) in zip(records, checks):
        hist.update(h)
        ctx.problems.extend(problems)
        oriented += rotated
        if problems:
            bad_paths.add(rec["img_path"])
    if oriented:
        shown = ", ".join(oriented[:5]) + (f" and {len(oriented) - 5} more" if len(oriented) > 5 else "")
        ctx.warnings.append(f"{len(oriented)} file(s) carry an EXIF orientation and are read rotated as a viewer "
                            f"shows them ({shown})")
    if ctx.problems and not skip_bad:
        shown = "\n  ".join(str(p) for p in ctx.problems[:SHOW_PROBLEMS])
        more = len(ctx.problems) - SHOW_PROBLEMS
        raise WMoEError(
            f"{key}: {len(ctx.problems)} problem(s) in {root}:\n  {shown}"
            + (f"\n  ... and {more} more" if more > 0 else "")
            + "\nFix the files, or rerun with --skip-bad to leave them out (they are then listed in prepare.json)."
        )

    wrapper = Path(os.path.relpath(root, raw_dir))
    for split in splits.values():
        for cls in split:
            split[cls] = [r for r in split[cls] if r["img_path"] not in bad_paths]
            for r in split[cls]:
                r["img_path"] = (wrapper / r["img_path"]).as_posix()
                r["mask_path"] = (wrapper / r["mask_path"]).as_posix() if r["mask_path"] else ""
    if spec.custom:
        counts, diffs = {"per_class": {c: {"expected": None, "found": _count(r)} for c, r in splits["test"].items()},
                         "total": {"expected": None, "found": _count(_records({"test": splits["test"]}))}}, []
    else:
        counts, diffs = compare_counts(spec, splits["test"])
    binarised = sorted({int(v > spec.mask_threshold) for v in hist})
    report = {
        "dataset": key,
        "display_name": spec.display_name,
        "protocol": spec.protocol,
        "description": spec.description,
        "raw_dir": os.path.relpath(raw_dir, out_dir),
        "dataset_root": wrapper.as_posix(),
        "counts": counts,
        "count_differences": diffs,
        "missing_classes": ctx.missing_classes,
        "warnings": ctx.warnings,
        "train_images": sum(len(r) for r in splits["train"].values()),
        "mask_threshold": spec.mask_threshold,
        "mask_value_histogram": {str(v): n for v, n in sorted(hist.items())},
        "mask_values_after_binarisation": binarised,
        "exif_oriented": [(wrapper / p).as_posix() for p in oriented],
        "skipped": [p.__dict__ for p in ctx.problems],
        "ignored": ctx.ignored,
        "strict": strict,
    }
    if spec.balance_seed is not None:
        report["balance_seed"] = spec.balance_seed
    if spec.custom:
        report["custom"] = custom_block(spec)
        report["class_levels"] = _class_levels(splits["test"])
    if spec.pixel_metrics and binarised != [0, 1]:
        raise WMoEError(f"{key}: masks binarise to {binarised}, expected both 0 and 1 (threshold "
                        f"{spec.mask_threshold}; mask value histogram {report['mask_value_histogram']})")
    if diffs and strict:
        raise WMoEError(f"{key}: counts or classes differ from the registry (--strict):\n  " + "\n  ".join(diffs))
    meta = {
        "root": os.path.relpath(raw_dir, out_dir),
        "dataset": key,
        "protocol": spec.protocol,
        "mask_threshold": spec.mask_threshold,
        "train": splits["train"],
        "test": splits["test"],
    }
    if spec.custom:
        meta["custom"] = custom_block(spec)
    meta_path = out_dir / META_FILE
    validate(meta, str(meta_path))
    write_files([(out_dir / REPORT_FILE, json_text(report).encode("utf-8")),
                 (meta_path, json_text(meta).encode("utf-8"))])
    return PrepareResult(meta_path, report, diffs, ctx.problems, ctx.missing_classes, ctx.warnings)
