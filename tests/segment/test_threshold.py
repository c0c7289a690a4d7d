import numpy as np
import pytest

from raydist.errors import ConfigError
from raydist.segment.threshold import Threshold


def test_threshold_formula_on_hand_made_maps():
    maps = [np.array([[1.0, 3.0]]), np.array([[1.0, 3.0]])]  # mu = 2, sigma = 1
    t = Threshold(k=3).fit(maps)
    assert t.mu == pytest.approx(2.0) and t.sigma == pytest.approx(1.0) and t.threshold == pytest.approx(5.0)
    m = np.array([[4.9, 5.0, 5.1]])
    assert t.predict(m).tolist() == [[False, False, True]]
    assert Threshold(k=2).fit(maps).threshold == pytest.approx(4.0)
    big = np.zeros((224, 224))
    assert t.predict(big).shape == (224, 224)
    with pytest.raises(ConfigError):
        Threshold(k=-1)
