"""Bad input raises MetricInputError (a WMoEError and a ValueError) naming the argument."""

import numpy as np
import pytest

from wmoe_clip.errors import WMoEError
from wmoe_clip.metrics import MetricInputError, aupro, image_metrics, pixel_metrics

MASKS = np.zeros((2, 4, 4), dtype=bool)
MAPS = np.zeros((2, 4, 4), dtype=np.float32)


@pytest.mark.parametrize(("call", "named"), [
    (lambda: image_metrics([0, 1, 1], [0.1, 0.2]), "labels has shape"),
    (lambda: image_metrics([0, 1], [0.1, np.nan]), "scores: contains NaN"),
    (lambda: image_metrics([0, 1], [0.1, np.inf]), "scores: contains NaN or infinite"),
    (lambda: image_metrics([], []), "labels: empty"),
    (lambda: image_metrics([0, 2], [0.1, 0.2]), "labels: labels must be binary"),
    (lambda: image_metrics([0, 1], ["a", "b"]), "scores"),
    (lambda: image_metrics([[0, 1]], [[0.1, 0.2]]), "one-dimensional"),
    (lambda: pixel_metrics(MASKS, MAPS[:1]), "masks has shape"),
    (lambda: pixel_metrics(np.full(MASKS.shape, 255.0), MAPS), "masks: labels must be binary"),
    (lambda: pixel_metrics(MASKS, np.where(MASKS, 0, -np.inf)), "maps: contains NaN"),
    (lambda: pixel_metrics(MASKS[:0], MAPS[:0]), "masks: empty"),
    (lambda: pixel_metrics(MASKS.ravel(), MAPS.ravel()), "shape \\(n, H, W\\)"),
    (lambda: aupro(MASKS, MAPS, fpr_limit=1.5), "fpr_limit"),
    (lambda: aupro(MASKS, MAPS, fpr_limit="0.3x"), "fpr_limit"),
    (lambda: aupro(MASKS, MAPS, definition="mvtec3d"), "definition"),
])
def test_bad_input_names_the_argument(call, named):
    with pytest.raises(MetricInputError, match=named) as info:
        call()
    assert isinstance(info.value, WMoEError) and isinstance(info.value, ValueError)


def test_accepted_input_forms():
    # 0/1 floats, a single (H, W) image and integer scores are all valid.
    masks = np.zeros((4, 4))
    masks[1, 1] = 1.0
    scores = np.arange(16).reshape(4, 4)
    assert pixel_metrics(masks, scores) == pixel_metrics(masks[None].astype(bool), scores[None].astype(float))
