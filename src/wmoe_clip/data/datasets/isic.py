"""ISIC 2016 (ISBI Part 1 test): ``ISIC_<n>.jpg`` <-> ``ISIC_<n>_Segmentation.png``, paired by name.

Only the challenge test part is used (379 images); every image is anomalous (pixel-only).
"""

from ..convert import Context, Layout, Splits, image_mask_folders
from ..synth.writer import Shape, image_mask_writer

IMAGES, MASKS = "ISBI2016_ISIC_Part1_Test_Data", "ISBI2016_ISIC_Part1_Test_GroundTruth"
LAYOUT = Layout(markers=((IMAGES, MASKS),))


def convert(ctx: Context) -> Splits:
    return image_mask_folders(ctx, ctx.root / IMAGES, ctx.root / MASKS, suffixes=("_Segmentation",))


SHAPE = Shape(height=(60, 72), width=(80, 96))
write = image_mask_writer(IMAGES, MASKS, lambda i: f"ISIC_{3 * i + 1:07d}", "jpg", "{stem}_Segmentation.png")
