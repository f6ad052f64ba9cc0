import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter

from wmoe_clip.engine.smoothing import gaussian_smooth


@pytest.mark.parametrize(("sigma", "shape"), [(4.0, (37, 50)), (1.0, (7, 7)), (4.0, (5, 9)), (2.5, (64, 64))])
def test_equals_scipy_gaussian_filter_with_its_default_reflect_border(sigma, shape):
    maps = np.random.default_rng(0).random((3, *shape)).astype(np.float32)
    expected = np.stack([gaussian_filter(m.astype(np.float64), sigma) for m in maps])
    got = gaussian_smooth(torch.from_numpy(maps), sigma).numpy()
    np.testing.assert_allclose(got, expected, atol=1e-6)


def test_preserves_constant_maps_and_leading_axes():
    maps = torch.full((2, 4, 11, 11), 0.25)
    out = gaussian_smooth(maps, 4.0)
    assert out.shape == maps.shape
    torch.testing.assert_close(out, maps)
    assert gaussian_smooth(maps, 0.0) is maps
