"""Volume geometry against hand-computed affines."""

import numpy as np
import pytest

from cardiotwin.errors import InputError
from cardiotwin.imaging.volume import LabelMap, Volume


def test_affine_maps_indices_to_lps():
    rot = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])  # i → +y, j → −x
    v = Volume(np.zeros((4, 3, 2)), (0.5, 0.7, 2.0), (10.0, 20.0, 30.0), rot)
    # voxel (i, j, k) = (1, 2, 3): origin + 1·0.5·(0,1,0) + 2·0.7·(−1,0,0) + 3·2·(0,0,1)
    np.testing.assert_allclose(v.index_to_physical([1, 2, 3]), [10 - 1.4, 20 + 0.5, 36.0])
    np.testing.assert_allclose(v.physical_to_index(v.index_to_physical([[1, 2, 3]])), [[1, 2, 3]])
    assert v.voxel_volume_mm3 == pytest.approx(0.7)


@pytest.mark.parametrize("kw", [{"spacing_mm": (1, 0, 1)}, {"direction": np.ones((3, 3))},
                                {"array": np.zeros((3, 3))}])
def test_invalid_geometry_is_refused(kw):
    args = {"array": np.zeros((2, 2, 2)), "spacing_mm": (1, 1, 1), "origin_mm": (0, 0, 0)} | kw
    with pytest.raises(InputError):
        Volume(**args)


def test_labelmap_volume_ml():
    a = np.zeros((10, 10, 10), np.uint8)
    a[:5] = 1
    lm = LabelMap(Volume(a, (2.0, 2.0, 2.0), (0, 0, 0)))
    assert lm.volume_ml("lv_blood") == pytest.approx(500 * 8e-3)
    with pytest.raises(InputError, match="unknown label"):
        lm.mask("spleen")
