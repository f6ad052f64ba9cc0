"""ISIC 2016 (ISBI Part 1 test): ``ISIC_<n>.jpg`` <-> ``ISIC_<n>_Segmentation.png``, paired by name.

Only the challenge test part is used (379 images); every image is anomalous (pixel-only).
"""

from .common import Context, Layout, Splits, image_mask_folders

IMAGES, MASKS = "ISBI2016_ISIC_Part1_Test_Data", "ISBI2016_ISIC_Part1_Test_GroundTruth"
LAYOUT = Layout(markers=((IMAGES, MASKS),))


def convert(ctx: Context) -> Splits:
    return image_mask_folders(ctx, ctx.root / IMAGES, ctx.root / MASKS, suffixes=("_Segmentation",))
