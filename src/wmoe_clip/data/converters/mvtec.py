"""MVTec AD: ``<cls>/{train,test}/<specie>/*.png``, masks ``<cls>/ground_truth/<defect>/<id>_mask.png``.

Class folders are the registry's (``metal_nut`` with an underscore); the top-level ``license.txt``
and ``readme.txt`` are ignored.
"""

from .common import Context, Layout, Splits, defect_folder_dataset

LAYOUT = Layout(class_folders=True, root_names=("mvtec_anomaly_detection",))


def convert(ctx: Context) -> Splits:
    return defect_folder_dataset(ctx, normal="good", mask_suffixes=("_mask",))
