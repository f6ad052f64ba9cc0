"""DAGM 2007 in two layouts, two protocols (registry ``dagm.protocols``).

- ``bayes-pfl`` (project protocol): Bayes-PFL's pack, ``DAGM/Fabric<i>/test/{good,anomaly}/*.bmp``:
  seven classes (1-5, 7, 8), balanced 1:1, with precise re-annotated masks in
  ``ground_truth/anomaly/<stem>.png``.
- ``kaggle``: the Kaggle / HCI release, ``Class<i>/{Train,Test}/<id>.PNG`` (``Class<i>/Class<i>/...``
  as the per-class HCI zips extract is read too). The Test split of the classes present, named as in
  the release, labelled by ``Test/Label/Labels.txt``: a first line holding the class number, then one
  whitespace-separated row per image, ``<id> <flag 0|1> <image file> 0 <label file | 0>``. The flag
  decides: a flag-1 image takes the label file its row names (else ``<id>_label.PNG``), paired by
  name; a flag-0 image is normal even when a label file of its name exists (that file is listed as
  ignored). The labels are coarse ellipses. An image without a row, a row without its image, a flag-1
  row without its label file and a label file no row uses are problems. The Train split is not used.
"""

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from ..convert import (
    Context, Layout, Record, Splits, by_stem, defect_folder_dataset, ignore_other_folders, is_image, visible_entries,
)
from ..synth.writer import N_TRAIN, Shape, Writer, bayes_pfl_writer, split_counts
from . import Protocol

LABELS_TXT = "Labels.txt"
LABEL_SUFFIX = "_label"


def _pack(ctx: Context) -> Splits:
    return defect_folder_dataset(ctx, normal="good", mask_suffixes=("",))


def _class_dir(ctx: Context, cls: str) -> Path:
    """``<root>/<cls>``, or ``<root>/<cls>/<cls>`` when the class zip was extracted into its own folder."""
    nested = ctx.root / cls / cls
    return nested if (nested / "Test").is_dir() else ctx.root / cls


def _read_labels(ctx: Context, labels: Path) -> dict[str, tuple[int, str]]:
    """image file name -> (flag, label file name or '') from ``Labels.txt``; bad rows are problems."""
    rows: dict[str, tuple[int, str]] = {}
    lines = labels.read_text(encoding="utf-8-sig", errors="replace").splitlines()
    for number, line in enumerate(lines, start=1):
        fields = line.split()
        # A blank line; the header (the class number alone, or column names).
        if not fields or (number == 1 and (len(fields) < 2 or fields[1] not in ("0", "1"))):
            continue
        if len(fields) < 3 or fields[1] not in ("0", "1"):
            ctx.problem("bad labels row", labels, f"line {number}: {line.strip()!r}; expected <id> <0|1> <image> ...")
            continue
        name, label = fields[2], fields[4] if len(fields) > 4 and fields[4] != "0" else ""
        if name in rows:
            ctx.problem("bad labels row", labels, f"line {number}: {name} is listed twice")
            continue
        rows[name] = (int(fields[1]), label)
    return rows


def _kaggle_class(ctx: Context, cls: str) -> list[Record]:
    test = ctx.require_dir(_class_dir(ctx, cls) / "Test", f"class {cls!r} Test folder")
    label_dir = test / "Label"
    labels = label_dir / LABELS_TXT
    if not labels.is_file():
        ctx.problem("missing labels", labels, "the Test split needs Label/Labels.txt to tell defective images")
        return []
    rows = _read_labels(ctx, labels)
    images = {}
    for p in visible_entries(test):
        if is_image(p):
            images[p.name] = p
        elif p != label_dir:
            ctx.ignore(p, "not an image file" if p.is_file() else "unexpected folder")
    label_files = []
    for p in visible_entries(label_dir):
        if is_image(p):
            label_files.append(p)
        elif p != labels:
            ctx.ignore(p, "not an image file" if p.is_file() else "unexpected folder")
    masks = by_stem(ctx, label_files, "label file")
    flagged_normal = {Path(name).stem for name, (flag, _) in rows.items() if not flag}
    used, records = set(), []
    for name, (flag, label) in rows.items():
        img = images.pop(name, None)
        if img is None:
            ctx.problem("missing image", test / name, f"listed in {ctx.rel(labels)} but absent")
            continue
        if not flag:
            records.append(ctx.record(cls, img, None, "good", 0))
            continue
        mask = masks.get(Path(label).stem if label else img.stem + LABEL_SUFFIX)
        if mask is None:
            ctx.problem("missing mask", img, f"flagged defective in {ctx.rel(labels)} but its label file "
                        f"{label or img.stem + LABEL_SUFFIX + '.PNG'} is absent")
        elif mask.stem not in (img.stem + LABEL_SUFFIX, img.stem):
            ctx.problem("mask name mismatch", img, f"{ctx.rel(labels)} pairs it with {mask.name} (another id)")
        else:
            used.add(mask)
            records.append(ctx.record(cls, img, mask, "defect", 1))
    for img in images.values():
        ctx.problem("unlabelled image", img, f"no row in {ctx.rel(labels)}")
    for mask in masks.values():
        if mask in used:
            continue
        image = mask.stem[: -len(LABEL_SUFFIX)] if mask.stem.endswith(LABEL_SUFFIX) else mask.stem
        if image in flagged_normal:
            ctx.ignore(mask, f"{ctx.rel(labels)} flags its image as normal (flag 0); the flag wins")
        else:
            ctx.problem("orphan mask", mask, f"no defective row of {ctx.rel(labels)} uses it")
    return records


def _kaggle(ctx: Context) -> Splits:
    ignore_other_folders(ctx)
    classes = ctx.present_classes(lambda cls: ctx.root / cls)
    for cls in classes:
        train = _class_dir(ctx, cls) / "Train"
        if train.is_dir():
            ctx.ignore(train, "Train split: not part of the zero-shot test set")
    return {"train": {}, "test": {cls: _kaggle_class(ctx, cls) for cls in classes}}


def _ellipse(region: np.ndarray) -> np.ndarray:
    """A filled ellipse around ``region`` with a margin: DAGM's coarse weak labels."""
    ys, xs = np.nonzero(region)
    h, w = region.shape
    m = Image.new("L", (w, h), 0)
    ImageDraw.Draw(m).ellipse([xs.min() - 3, ys.min() - 3, xs.max() + 3, ys.max() + 3], fill=255)
    return np.asarray(m) > 0


def _write_kaggle(w: Writer, size: int) -> None:
    """The Kaggle release: ``DAGM_KaggleUpload/Class<i>/{Train,Test}/<nnnn>.PNG`` with ``Label/Labels.txt``.

    Labels.txt: the class number, then ``<id>\\t<flag>\\t<file>\\t0\\t<label file | 0>`` per image; the
    defective images' ellipse labels are ``Label/<nnnn>_label.PNG``. Train holds normals only here.
    """
    n_norm, n_anom = split_counts(w.spec, size)
    for number, cls in enumerate(w.spec.classes, start=1):
        for split, labels in (("Train", [0] * N_TRAIN), ("Test", w.rng.permutation([0] * n_norm + [1] * n_anom))):
            base = f"DAGM_KaggleUpload/{cls}/{split}"
            rows = [str(number)]
            for i, label in enumerate(labels, start=1):
                name = f"{i:04d}.PNG"
                regions = w.labelled(split.lower(), cls, f"{base}/{name}", bool(label))
                mask = f"{i:04d}_label.PNG" if label else "0"
                if label:
                    w.mask(f"{base}/Label/{mask}", [_ellipse(r) for r in regions])
                    w.truth[-1]["mask_path"] = f"{base}/Label/{mask}"
                rows.append(f"{i}\t{int(label)}\t{name}\t0\t{mask}")
            w.target(f"{base}/Label/Labels.txt").write_text("\n".join(rows) + "\n")


SHAPE = Shape(height=(64, 64), width=(64, 64), grey=True)
PROTOCOLS = {
    "bayes-pfl": Protocol(Layout(class_folders=True, root_names=("DAGM",)), _pack, bayes_pfl_writer("DAGM")),
    "kaggle": Protocol(Layout(markers=(("Class*/Test/Label",), ("Class*/Class*/Test/Label",)),
                              root_names=("DAGM_KaggleUpload",)), _kaggle, _write_kaggle),
}
