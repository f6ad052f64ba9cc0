"""EndoTect 2020 segmentation test set: ``EndoTect_2020_Segmentation_Test_Dataset/{<images>, masks}/``.

Pitfall handled: AnomalyCLIP's endoTect.py treats every folder but ``masks`` as images. Here the
image folder is ``images`` when present, otherwise the only other folder; any further folder is a
stray-folder problem and an ambiguous layout is an error. Masks are paired by stem; pixel-only.
"""

from ...errors import WMoEError
from ..convert import Context, Layout, Splits, image_mask_folders, visible_entries
from ..synth.textures import stable_seed
from ..synth.writer import Shape, image_mask_writer

LAYOUT = Layout(markers=(("masks",),), root_names=("EndoTect_2020_Segmentation_Test_Dataset",))


def convert(ctx: Context) -> Splits:
    others = [p for p in visible_entries(ctx.root) if p.is_dir() and p.name != "masks"]
    named = [p for p in others if p.name == "images"]
    if named:
        image_dir = named[0]
    elif len(others) == 1:
        image_dir = others[0]
    else:
        raise WMoEError(
            f"endo: cannot tell the image folder beside masks/ in {ctx.root}: found "
            f"{[p.name for p in others] or 'none'}; keep exactly one image folder (or name it images/)"
        )
    for p in others:
        if p != image_dir:
            ctx.problem("stray folder", p, f"a folder besides {image_dir.name}/ and masks/")
    return image_mask_folders(ctx, image_dir, ctx.root / "masks")


SHAPE = Shape(height=(64, 80), width=(72, 96))
write = image_mask_writer("EndoTect_2020_Segmentation_Test_Dataset/images",
                          "EndoTect_2020_Segmentation_Test_Dataset/masks",
                          lambda i: f"{stable_seed('endo', i):08x}", "jpg", "{stem}.png")
