"""HeadCT (Kaggle): ``labels.csv`` (``id, hemorrhage``) and ``head_ct/head_ct/<id:03d>.png``.

Pitfalls handled: the integer ids of ``labels.csv`` map to zero-padded file names, the header may
carry spaces, and every image must have exactly one label (an unlabelled image is a problem).
Image-only: anomalous records have no mask. Class ``brain`` as in AnomalyCLIP.
"""

import csv

from ..convert import Context, Layout, Splits, list_images
from ..synth.writer import Shape, Writer, split_counts

LAYOUT = Layout(markers=(("labels.csv", "head_ct"),))


def _image_dir(ctx: Context):
    for rel in ("head_ct/head_ct", "head_ct"):
        d = ctx.root / rel
        if d.is_dir() and any(p.suffix.lower() == ".png" for p in d.iterdir()):
            return d
    return ctx.require_dir(ctx.root / "head_ct" / "head_ct", "image folder")


def convert(ctx: Context) -> Splits:
    (cls,) = ctx.spec.classes
    image_dir = _image_dir(ctx)
    images = {p.name: p for p in list_images(ctx, image_dir)}
    labels_csv = ctx.root / "labels.csv"
    records, labelled = [], set()
    with open(labels_csv, newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        header = [h.strip().lower() for h in next(reader, [])]
        if header[:2] != ["id", "hemorrhage"]:
            ctx.problem("bad csv", labels_csv, f"header {header}, expected id, hemorrhage")
            return {"train": {}, "test": {cls: []}}
        for line, row in enumerate(reader, start=2):
            try:
                name, label = f"{int(row[0]):03d}.png", int(row[1])
                if label not in (0, 1):
                    raise ValueError(label)
            except (ValueError, IndexError):
                ctx.problem("bad csv row", labels_csv, f"line {line}: {row}")
                continue
            if name not in images:
                ctx.problem("missing image", image_dir / name, f"labelled on line {line} of labels.csv but absent")
                continue
            labelled.add(name)
            records.append(ctx.record(cls, images[name], None, "hemorrhage" if label else "good", label))
    for name, p in images.items():
        if name not in labelled:
            ctx.problem("unlabelled image", p, "no row in labels.csv")
    return {"train": {}, "test": {cls: records}}


SHAPE = Shape(height=(64, 80), width=(64, 80), grey=True)


def write(w: Writer, size: int) -> None:
    n_norm, n_anom = split_counts(w.spec, size)
    labels = w.rng.permutation([0] * n_norm + [1] * n_anom)
    (cls,) = w.spec.classes
    for i, label in enumerate(labels):
        w.pair("test", cls, f"head_ct/head_ct/{i:03d}.png", None, bool(label))
    # The Kaggle header has a space after the comma; ids are plain integers.
    w.target("labels.csv").write_text("id, hemorrhage\n" + "".join(f"{i},{l}\n" for i, l in enumerate(labels)))
