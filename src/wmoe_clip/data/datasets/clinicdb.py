"""CVC-ClinicDB: ``CVC-ClinicDB/{images,masks}/<n>.tif`` (or the original ``Original/``, ``Ground Truth/``).

All 612 frames (not PraNet's 62-frame test subset; the count check tells them apart), paired by
name; pixel-only.
"""

from ..convert import Context, Layout, Splits, image_mask_folders
from ..synth.writer import Shape, image_mask_writer

FOLDER_PAIRS = (("images", "masks"), ("Original", "Ground Truth"))
LAYOUT = Layout(markers=FOLDER_PAIRS, root_names=("CVC-ClinicDB",))


def convert(ctx: Context) -> Splits:
    images, masks = next(p for p in FOLDER_PAIRS if all((ctx.root / d).is_dir() for d in p))
    return image_mask_folders(ctx, ctx.root / images, ctx.root / masks)


SHAPE = Shape(height=(72, 72), width=(96, 96))
write = image_mask_writer("CVC-ClinicDB/images", "CVC-ClinicDB/masks", lambda i: str(i + 1), "tif", "{stem}.tif")
