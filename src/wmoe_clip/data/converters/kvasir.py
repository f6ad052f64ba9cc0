"""Kvasir-SEG: ``Kvasir-SEG/{images,masks}/<id>.jpg`` with the same name in both, plus a bbox JSON.

All 1,000 images, pixel-only. The masks are JPEG, so their edges carry compression noise; the
registry's ``mask_threshold`` (127: foreground iff value >= 128) goes into meta.json for the loader.
"""

from .common import Context, Layout, Splits, image_mask_folders

LAYOUT = Layout(markers=(("images", "masks"),), root_names=("Kvasir-SEG",))


def convert(ctx: Context) -> Splits:
    return image_mask_folders(ctx, ctx.root / "images", ctx.root / "masks")
