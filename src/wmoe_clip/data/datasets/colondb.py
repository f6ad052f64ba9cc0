"""CVC-ColonDB (PraNet pack): ``CVC-ColonDB/{images,masks}/`` with the same file name in both.

All 380 frames, every one anomalous (pixel-only); paired by name, not by sorted listings.
"""

from ..convert import Context, Layout, Splits, image_mask_folders
from ..synth.writer import Shape, image_mask_writer

LAYOUT = Layout(markers=(("images", "masks"),), root_names=("CVC-ColonDB",))


def convert(ctx: Context) -> Splits:
    return image_mask_folders(ctx, ctx.root / "images", ctx.root / "masks")


SHAPE = Shape(height=(60, 60), width=(80, 80))
write = image_mask_writer("CVC-ColonDB/images", "CVC-ColonDB/masks", lambda i: str(i + 1), "png", "{stem}.png")
