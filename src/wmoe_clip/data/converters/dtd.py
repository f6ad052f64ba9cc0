"""DTD-Synthetic: ``<cls>/{train/good,test/{good,bad}}``, masks in ``<cls>/ground_truth/bad/``.

The mask naming is uncertain in the sources (docs/DATASETS.md §5.6), so a mask may be named after the
image's stem with or without ``_mask``; each is still paired by name.
"""

from .common import Context, Layout, Splits, defect_folder_dataset

LAYOUT = Layout(class_folders=True)


def convert(ctx: Context) -> Splits:
    return defect_folder_dataset(ctx, normal="good", mask_suffixes=("_mask", ""))
