"""DAGM 2007, Bayes-PFL pack (project protocol): ``DAGM/Fabric<i>/test/{good,anomaly}/*.bmp``.

Seven classes (1-5, 7, 8), balanced 1:1, with precise re-annotated masks in
``ground_truth/anomaly/<stem>.png``. The Kaggle release (10 classes, ellipse labels, capitalised
``Train``/``Test``) is a different protocol and is not read here.
"""

from .common import Context, Layout, Splits, defect_folder_dataset

LAYOUT = Layout(class_folders=True, root_names=("DAGM",))


def convert(ctx: Context) -> Splits:
    return defect_folder_dataset(ctx, normal="good", mask_suffixes=("",))
