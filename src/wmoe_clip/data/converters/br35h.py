"""Br35H (Kaggle): ``no/`` (normal), ``yes/`` (tumour) and the unlabeled ``pred/``.

Pitfall handled: ``pred/`` holds 60 unlabeled images that AnomalyCLIP's br35.py counts as
anomalies; it is excluded explicitly (listed as ignored in prepare.json), and any other folder is
a stray-folder problem. Image-only.
"""

from .common import Context, Layout, Splits, labelled_folders

LAYOUT = Layout(markers=(("no", "yes"),))


def convert(ctx: Context) -> Splits:
    return labelled_folders(
        ctx, ctx.root, {"no": (0, "good"), "yes": (1, "tumor")}, excluded={"pred": "unlabeled images (Br35H pred/)"}
    )
