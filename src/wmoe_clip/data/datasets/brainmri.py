"""BrainMRI (Kaggle): ``brain_tumor_dataset/{no,yes}/`` with mixed ``.jpg/.JPG/.jpeg/.png``.

Test set: all files (98 / 155; AnomalyCLIP), every extension in any case. The Kaggle archive also
has copies of ``no/`` and ``yes/`` beside ``brain_tumor_dataset/``; the named folder is preferred.
Image-only.
"""

from ..convert import Context, Layout, Splits, labelled_folders
from ..synth.writer import Shape, Writer, split_counts

LAYOUT = Layout(markers=(("no", "yes"),), root_names=("brain_tumor_dataset",))


def convert(ctx: Context) -> Splits:
    return labelled_folders(ctx, ctx.root, {"no": (0, "good"), "yes": (1, "tumor")})


SHAPE = Shape(height=(64, 96), width=(56, 88), grey=True)
# The real archive mixes these extensions; the stand-in cycles through them.
EXTS = ("jpg", "JPG", "jpeg", "png")


def write(w: Writer, size: int) -> None:
    n_norm, n_anom = split_counts(w.spec, size)
    (cls,) = w.spec.classes
    for i in range(n_norm):
        w.pair("test", cls, f"brain_tumor_dataset/no/{i + 1} no.{EXTS[i % 4]}", None, False)
    for i in range(n_anom):
        w.pair("test", cls, f"brain_tumor_dataset/yes/Y{i + 1}.{EXTS[(i + 1) % 4]}", None, True)
