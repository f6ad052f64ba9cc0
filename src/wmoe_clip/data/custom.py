"""Users' own datasets (``wmoe-clip prepare folder``): a folder in the MVTec convention, or a CSV.

Folder (as anomalib's Folder dataset): ``DIR/<class>/`` per class, or ``DIR`` itself as the one class
(named after the dataset) when it holds ``good/``, ``ground_truth/`` or ``test/`` directly. In a
class, ``good/`` holds the normal images and every other folder anomalous ones, its name the defect
type (``<class>/test/`` is used in place of ``<class>/`` when present, as MVTec lays it out;
``<class>/train/`` is then not used). Masks live in ``<class>/ground_truth/<defect>/`` and pair with
their image by name: the image's stem, with or without a ``_mask`` suffix, any image extension.

CSV: one row per image, ``path,label[,mask][,class]`` (a header naming these columns is optional),
paths relative to the CSV's folder; ``label`` is 0/1 or normal/good vs anomaly/anomalous/abnormal/
defect; an empty ``class`` is the dataset's name. Image files below the CSV's folder that no row
names are listed as ignored. The text is UTF-8 (a byte-order mark allowed) or UTF-16 with a
byte-order mark; any other encoding is refused, naming the file.

What applies is derived from what is there: pixel metrics iff some anomalous image has a mask, image
metrics iff there are normal images (and anomalous ones). A class whose anomalous images have no
masks is an image-only class. A class where only *some* anomalous images have a mask keeps those
masks (a warning counts and names the images without one): its pixel metrics use the masked
anomalous images and the normal ones, its image metrics all images; the evaluation leaves the
unmasked ones out of the pixel metrics (scoring their defects as normal pixels would bias every
pixel metric) and says how many (``n_anomalous_without_mask``). A class name is letters, digits,
'_', '-', '.' and spaces (it becomes an MLflow metric name); anything else (``../x``) is refused.
A listed file that does not exist, an image listed twice, a mask without an image, a mask of another
size and an unreadable file are problems (an error, or skipped with ``--skip-bad``); stray files and
folders are listed as ignored.
"""

from __future__ import annotations

import codecs
import csv
import io
import re
from collections import defaultdict
from pathlib import Path, PurePosixPath

from ..errors import WMoEError
from . import registry
from .convert import IMAGE_EXTS, Context, Record, Splits, is_image, list_images, match_masks, visible_entries

NORMAL_FOLDER = "good"
MASK_FOLDER = "ground_truth"
MASK_SUFFIXES = ("", "_mask")
COLUMNS = ("path", "label", "mask", "class")
# Letters (any script), digits, '_', then also '-', '.' and inner spaces: what MLflow takes in a metric name.
CLASS_NAME = re.compile(r"\w[\w.\- ]*(?<! )")
LABELS = {"0": 0, "normal": 0, "good": 0, "1": 1, "anomaly": 1, "anomalous": 1, "abnormal": 1, "defect": 1}


def _folder_class(ctx: Context, cls: str, class_dir: Path) -> list[Record]:
    base = class_dir / "test" if (class_dir / "test").is_dir() else class_dir
    if base != class_dir:
        for p in visible_entries(class_dir):
            if p.name not in ("test", MASK_FOLDER):
                ctx.ignore(p, "besides test/ and ground_truth/, a class folder's entries are not used")
    records: list[Record] = []
    defects = []
    for p in visible_entries(base):
        if not p.is_dir():
            ctx.ignore(p, "a stray file: images belong in good/ or a defect folder")
        elif p.name == NORMAL_FOLDER:
            records += [ctx.record(cls, img, None, "good", 0) for img in list_images(ctx, p)]
        elif p.name != MASK_FOLDER:
            defects.append(p.name)
            for img, mask in match_masks(ctx, list_images(ctx, p), class_dir / MASK_FOLDER / p.name, MASK_SUFFIXES):
                records.append(ctx.record(cls, img, mask, p.name, 1))
    gt = class_dir / MASK_FOLDER
    if gt.is_dir():
        for p in visible_entries(gt):
            if not p.is_dir():
                ctx.ignore(p, "a stray file: masks belong in ground_truth/<defect>/")
            elif p.name not in defects:
                for mask in list_images(ctx, p):
                    ctx.problem("orphan mask", mask, f"no {p.name}/ folder holds its image")
    return records


def _folder(ctx: Context) -> dict[str, list[Record]]:
    root = ctx.root
    if any((root / name).is_dir() for name in (NORMAL_FOLDER, MASK_FOLDER, "test")):
        return {ctx.spec.key: _folder_class(ctx, ctx.spec.key, root)}
    test: dict[str, list[Record]] = {}
    for p in visible_entries(root):
        if p.is_dir():
            test[p.name] = _folder_class(ctx, p.name, p)
        else:
            ctx.ignore(p, "a stray file: the folder holds one sub-folder per class")
    return test


def _inside(path: str) -> bool:
    p = PurePosixPath(path)
    return bool(path) and not p.is_absolute() and ".." not in p.parts


CSV_ENCODINGS = "UTF-8 (with or without a byte-order mark) or UTF-16 with a byte-order mark"


def _csv_text(csv_path: Path) -> str:
    """The CSV's text: UTF-16 when it starts with a UTF-16 byte-order mark, else UTF-8 (a UTF-8 mark dropped).

    No other encoding is guessed: a Latin-1 or cp1252 file would decode to *some* text and name
    files that do not exist, so it is refused with the encodings that are read.
    """
    data = csv_path.read_bytes()
    try:
        if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
            return data.decode("utf-16")
        if b"\0" in data:
            raise UnicodeDecodeError("utf-8", data, data.index(b"\0"), data.index(b"\0") + 1,
                                     "a NUL byte: UTF-16 without a byte-order mark?")
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise WMoEError(f"{csv_path}: not a text encoding that is read (byte {exc.start}: {exc.reason}); "
                        f"save the CSV as {CSV_ENCODINGS}") from None


def _csv_rows(csv_path: Path) -> list[list[str]]:
    rows = [r for r in csv.reader(io.StringIO(_csv_text(csv_path), newline="")) if any(cell.strip() for cell in r)]
    if rows and [c.strip().lower() for c in rows[0]] == list(COLUMNS[: len(rows[0])]):
        return rows[1:]
    if rows and rows[0] and rows[0][0].strip().lower() == "path":
        raise WMoEError(f"{csv_path}: header {rows[0]}; the columns are {', '.join(COLUMNS)} in this order "
                        "(mask and class optional)")
    return rows


def _csv(ctx: Context, csv_path: Path) -> dict[str, list[Record]]:
    test: dict[str, list[Record]] = defaultdict(list)
    listed, images = {csv_path.resolve()}, set()
    for line, row in enumerate(_csv_rows(csv_path), start=1):
        cells = [c.strip() for c in row] + [""] * (len(COLUMNS) - len(row))
        path, label, mask, cls = cells[0].replace("\\", "/"), cells[1], cells[2].replace("\\", "/"), cells[3]
        where = f"{csv_path.name} row {line}"
        if len(row) > len(COLUMNS) or label.lower() not in LABELS or not _inside(path) or (mask and not _inside(mask)):
            ctx.problem("bad csv row", csv_path, f"{where}: {row}; expected path,label[,mask][,class] with paths "
                        "relative to the CSV's folder and label 0/1 (or normal/anomaly)")
            continue
        img = ctx.root / path
        if not is_image(img):
            ctx.problem("missing image", img, f"listed in {where} but absent (or not an image file)")
            continue
        if img.resolve() in images:
            ctx.problem("bad csv row", img, f"{where} lists it a second time")
            continue
        images.add(img.resolve())
        listed.add(img.resolve())
        anomaly = LABELS[label.lower()]
        mask_file = ctx.root / mask if mask else None
        if mask_file is not None:
            listed.add(mask_file.resolve())
            if not is_image(mask_file):
                ctx.problem("missing mask file", mask_file, f"named in {where} but absent (or not an image file)")
                continue
            if not anomaly:
                ctx.ignore(mask_file, f"{where} labels its image normal; the label wins")
                mask_file = None
        cls = cls or ctx.spec.key
        test[cls].append(ctx.record(cls, img, mask_file, "anomaly" if anomaly else "good", anomaly))
    for p in sorted(ctx.root.rglob("*")):
        hidden = any(part.startswith(".") for part in p.relative_to(ctx.root).parts)
        if not hidden and p.is_file() and p.suffix.lower() in IMAGE_EXTS and p.resolve() not in listed:
            ctx.ignore(p, f"an image file that {csv_path.name} does not list")
    return dict(test)


def _warn_unmasked(ctx: Context, test: dict[str, list[Record]]) -> None:
    """A class with masks for only some of its anomalous images keeps them, with a warning counting the rest."""
    for cls, records in test.items():
        anomalous = [r for r in records if r["anomaly"]]
        unmasked = [r["img_path"] for r in anomalous if not r["mask_path"]]
        if unmasked and len(unmasked) < len(anomalous):
            shown = ", ".join(unmasked[:5]) + (f" and {len(unmasked) - 5} more" if len(unmasked) > 5 else "")
            ctx.warnings.append(f"class {cls!r}: {len(unmasked)} of {len(anomalous)} anomalous images have no mask "
                                f"({shown}); they are left out of the pixel metrics, which use the "
                                f"{len(anomalous) - len(unmasked)} with a mask and the normal images; the image "
                                "metrics use all")


def _check_class_names(test: dict[str, list[Record]], source: Path) -> None:
    """Class names become MLflow metric names and labels in reports: no path separators or odd characters."""
    for cls in test:
        if not CLASS_NAME.fullmatch(cls):
            raise WMoEError(f"{source}: class name {cls!r}: use letters, digits, '_', '-', '.' and spaces, starting "
                            "with a letter, digit or '_' (no '/' or '..'); rename the class")


def convert_custom(name: str, raw: Path | None = None, csv_path: Path | None = None) -> tuple[Context, Splits]:
    """Read a user's dataset (a folder ``raw`` or a CSV ``csv_path``); returns its context and splits.

    ``ctx.spec`` is the derived spec: classes found, metric levels from the labels and masks found.
    """
    if (raw is None) == (csv_path is None):
        raise WMoEError("prepare folder: give either --raw DIR or --csv FILE")
    source = raw if csv_path is None else csv_path
    if csv_path is None and not raw.is_dir():
        raise WMoEError(f"{name}: folder {raw} does not exist; --raw takes a folder of class sub-folders")
    if raw is None and not csv_path.is_file():
        raise WMoEError(f"{name}: CSV file {csv_path} does not exist")
    root = raw if csv_path is None else csv_path.parent
    description = f"user dataset: {'folder' if csv_path is None else 'CSV'} {source.name}"
    ctx = Context(root=root, spec=registry.custom_spec(name, name, True, True, (), description))
    test = _folder(ctx) if csv_path is None else _csv(ctx, csv_path)
    _check_class_names(test, source)
    _warn_unmasked(ctx, test)
    records = [r for recs in test.values() for r in recs]
    if not records:
        raise WMoEError(f"{name}: no images found in {source}; expected "
                        + ("class folders with good/ and defect folders" if csv_path is None else "rows path,label"))
    normal = any(not r["anomaly"] for r in records)
    anomalous = any(r["anomaly"] for r in records)
    pixel = any(r["mask_path"] for r in records)
    if not (pixel or (normal and anomalous)):
        raise WMoEError(f"{name}: no metric applies to {source}: image metrics need normal and anomalous "
                        "images, pixel metrics need masks")
    ctx.spec = registry.custom_spec(name, name, normal and anomalous, pixel, tuple(test), description)
    return ctx, {"train": {}, "test": test}
