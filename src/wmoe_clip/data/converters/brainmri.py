"""BrainMRI (Kaggle): ``brain_tumor_dataset/{no,yes}/`` with mixed ``.jpg/.JPG/.jpeg/.png``.

Variant: all files (98 / 155; AnomalyCLIP), every extension in any case. The Kaggle archive also
has copies of ``no/`` and ``yes/`` beside ``brain_tumor_dataset/``; the named folder is preferred.
Image-only.
"""

from .common import Context, Layout, Splits, labelled_folders

LAYOUT = Layout(markers=(("no", "yes"),), root_names=("brain_tumor_dataset",))


def convert(ctx: Context) -> Splits:
    return labelled_folders(ctx, ctx.root, {"no": (0, "good"), "yes": (1, "tumor")})
