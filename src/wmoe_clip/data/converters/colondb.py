"""CVC-ColonDB (PraNet pack): ``CVC-ColonDB/{images,masks}/`` with the same file name in both.

All 380 frames, every one anomalous (pixel-only); paired by name, not by sorted listings.
"""

from .common import Context, Layout, Splits, image_mask_folders

LAYOUT = Layout(markers=(("images", "masks"),), root_names=("CVC-ColonDB",))


def convert(ctx: Context) -> Splits:
    return image_mask_folders(ctx, ctx.root / "images", ctx.root / "masks")
