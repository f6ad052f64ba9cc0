"""VisA: images and masks listed by ``split_csv/1cls.csv`` (``object,split,label,image,mask``).

The CSV is the pairing: a row names its mask. Checked on purpose: every listed file exists, an
anomaly row has a mask with the image's stem, a normal row has none, and every mask file in
``<cls>/Data/Masks/Anomaly`` is listed (no orphan). Masks are not 0/255; the loader binarises > 0.
specie_name is '' as in AnomalyCLIP's visa.py.
"""

import csv
import io

from ..convert import Context, Layout, Splits, list_images
from ..synth.writer import N_TRAIN, Shape, Writer, split_counts

LAYOUT = Layout(markers=(("split_csv/1cls.csv",),), root_names=("VisA_20220922", "VisA"))
COLUMNS = ("object", "split", "label", "image", "mask")


def convert(ctx: Context) -> Splits:
    csv_path = ctx.root / "split_csv" / "1cls.csv"
    splits: Splits = {"train": {}, "test": {}}
    listed_masks = set()
    with open(csv_path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames is None or any(c not in reader.fieldnames for c in COLUMNS):
            ctx.problem("bad csv", csv_path, f"columns {reader.fieldnames}, expected {', '.join(COLUMNS)}")
            return splits
        for line, row in enumerate(reader, start=2):
            cls, split, label = row["object"].strip(), row["split"].strip(), row["label"].strip()
            img, mask = ctx.root / row["image"].strip(), row["mask"].strip()
            where = f"{ctx.rel(csv_path)} line {line}"
            if split not in ("train", "test") or label not in ("normal", "anomaly"):
                ctx.problem("bad csv row", csv_path, f"{where}: split {split!r} / label {label!r}")
                continue
            if not img.is_file():
                ctx.problem("missing image", img, f"listed in {where} but absent")
                continue
            if label == "normal":
                if mask:
                    ctx.problem("normal with mask", img, f"{where} gives a normal image the mask {mask}")
                    continue
                rec = ctx.record(cls, img, None, "", 0)
            else:
                mask_path = ctx.root / mask if mask else None
                if mask_path is None or not mask_path.is_file():
                    ctx.problem("missing mask", img, f"{where}: anomaly without an existing mask ({mask or 'empty'})")
                    continue
                if mask_path.stem != img.stem:
                    ctx.problem("mask name mismatch", img, f"{where} pairs it with {mask} (another stem)")
                    continue
                listed_masks.add(mask_path)
                rec = ctx.record(cls, img, mask_path, "", 1)
            splits[split].setdefault(cls, []).append(rec)
    for cls in ctx.spec.classes:
        mask_dir = ctx.root / cls / "Data" / "Masks" / "Anomaly"
        if mask_dir.is_dir():
            for m in list_images(ctx, mask_dir):
                if m not in listed_masks:
                    ctx.problem("orphan mask", m, "mask not listed for any anomaly in split_csv/1cls.csv")
    return splits


SHAPE = Shape(height=(64, 72), width=(80, 96))


def write(w: Writer, size: int) -> None:
    n_norm, n_anom = split_counts(w.spec, size)
    rows = []
    for cls in w.spec.classes:
        images = f"{cls}/Data/Images"
        for split, n, start in (("train", N_TRAIN, 0), ("test", n_norm, N_TRAIN)):
            for i in range(start, start + n):
                rel = f"{images}/Normal/{i:04d}.JPG"
                w.pair(split, cls, rel, None, False)
                rows.append([cls, split, "normal", rel, ""])
        for i in range(n_anom):
            rel, mask = f"{images}/Anomaly/{i:03d}.JPG", f"{cls}/Data/Masks/Anomaly/{i:03d}.png"
            # Real VisA masks are not 0/255: each defect carries a small label value.
            n_def = 1 + i % 2
            w.pair("test", cls, rel, mask, True, n_defects=n_def, values=list(range(1, n_def + 1)))
            rows.append([cls, "test", "anomaly", rel, mask])
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows([list(COLUMNS), *rows])
    w.target("split_csv/1cls.csv").write_text(buf.getvalue())
