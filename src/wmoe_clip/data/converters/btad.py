"""BTAD: ``{01,02,03}/{train/ok,test/{ok,ko}}``, masks ``ground_truth/ko/<id>.<ext>``.

Pitfalls handled: the normal folder is ``ok`` (recorded as specie ``good``), and images and masks
mix ``.bmp`` and ``.png``, so they are paired by stem whatever the extensions (never by sort order).
"""

from .common import Context, Layout, Splits, defect_folder_dataset

LAYOUT = Layout(class_folders=True, root_names=("BTech_Dataset_transformed",))


def convert(ctx: Context) -> Splits:
    return defect_folder_dataset(ctx, normal="ok", mask_suffixes=("",))
