"""DTD-Synthetic: ``<cls>/{train/good,test/{good,bad}}``, masks in ``<cls>/ground_truth/bad/``.

The mask naming is uncertain in the sources (docs/DATASETS.md §5.6), so a mask may be named after the
image's stem with or without ``_mask``; each is still paired by name.
"""

from ..convert import Context, Layout, Splits, defect_folder_dataset
from ..synth.writer import Shape, Writer, write_defect_folders

LAYOUT = Layout(class_folders=True)


def convert(ctx: Context) -> Splits:
    return defect_folder_dataset(ctx, normal="good", mask_suffixes=("_mask", ""))


SHAPE = Shape(height=(64, 80), width=(64, 80))


def write(w: Writer, size: int) -> None:
    write_defect_folders(w, size, "good", lambda _: "bad", lambda i: f"{i:03d}",
                         lambda c, i: "png", lambda c, i: "{stem}_mask.png")
