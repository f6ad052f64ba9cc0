"""Br35H (Kaggle): ``no/`` (normal), ``yes/`` (tumour) and the unlabeled ``pred/``.

Pitfall handled: ``pred/`` holds 60 unlabeled images that AnomalyCLIP's br35.py counts as
anomalies; it is excluded explicitly (listed as ignored in prepare.json), and any other folder is
a stray-folder problem. Image-only.
"""

from ..convert import Context, Layout, Splits, labelled_folders
from ..synth.writer import Shape, Writer, split_counts

LAYOUT = Layout(markers=(("no", "yes"),))


def convert(ctx: Context) -> Splits:
    return labelled_folders(
        ctx, ctx.root, {"no": (0, "good"), "yes": (1, "tumor")}, excluded={"pred": "unlabeled images (Br35H pred/)"}
    )


SHAPE = Shape(height=(64, 96), width=(56, 88), grey=True)


def write(w: Writer, size: int) -> None:
    n_norm, n_anom = split_counts(w.spec, size)
    (cls,) = w.spec.classes
    for i in range(n_norm):
        w.pair("test", cls, f"no/no{i}.jpg", None, False)
    for i in range(n_anom):
        w.pair("test", cls, f"yes/y{i}.jpg", None, True)
    # The unlabeled pred/ folder of the real archive: images without labels, not in the truth.
    for i in range(max(2, size // 4)):
        w.image(f"pred/pred{i}.jpg", w.sample(cls, bool(i % 2))[0])
