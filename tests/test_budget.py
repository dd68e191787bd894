import numpy as np
import pytest

from mobile_kernelnet.budget import (BUDGETS, MODEL_BUDGETS, apply_window, budget_for, budget_input, pad_to_budget,
                                     select_window)
from mobile_kernelnet.estimation import KernelEstimator, estimate_kernel
from mobile_kernelnet.models import list_models


def _photo(rng, shape=(1200, 1800), at=(700, 1100), side=200):
    """A flat photo with one textured square: the only place with edges."""
    img = np.full(shape, 0.5, np.float32)
    img[at[0]:at[0] + side, at[1]:at[1] + side] = rng.random((side, side))
    return img


def test_window_goes_where_the_edges_are(rng):
    img = _photo(rng)
    w = select_window(img, 128)
    assert (w.height, w.width, w.how) == (128, 128, "edge-energy crop")
    assert 700 <= w.y <= 700 + 200 - 128 and 1100 <= w.x <= 1100 + 200 - 128
    crop = apply_window(img, w)
    assert crop.shape == (128, 128) and crop.std() > 0.2  # all texture, no flat sky
    assert "at (y " in w.describe() and "of 1200x1800" in w.describe()


def test_small_images_are_used_whole_and_padded_only_for_exported_graphs(rng):
    img = rng.random((90, 100)).astype(np.float32)
    w = select_window(img, 128)
    assert w.how == "whole image" and (w.height, w.width) == (90, 100)
    padded, w2 = budget_input(img, 128)
    assert w2 == w and padded.shape == (128, 128)
    np.testing.assert_array_equal(padded[19:109, 14:114], img)  # centred, reflect border around
    one_side = select_window(rng.random((90, 400)).astype(np.float32), 128)
    assert (one_side.height, one_side.width) == (90, 128)
    with pytest.raises(ValueError, match="larger than the budget"):
        pad_to_budget(img, 64)


def test_default_budget_is_the_table_unless_a_side_is_given():
    assert [budget_for(sf) for sf in (2, 3, 4)] == [BUDGETS[sf] for sf in (2, 3, 4)] and budget_for(3, 96) == 96
    with pytest.raises(ValueError):
        budget_for(2, 0)


def test_a_model_with_its_own_budget_gets_it_by_default_and_only_at_its_sfs(rng):
    """S2K sees 128 px at sf 2 (budget.py), KernelNet the sf's 192; an explicit side wins."""
    assert set(MODEL_BUDGETS) <= set(list_models())
    assert budget_for(2, None, "s2k") == 128 != budget_for(2, None, "kernelnet") == BUDGETS[2]
    assert budget_for(4, None, "s2k") == BUDGETS[4] and budget_for(2, 160, "s2k") == 160
    photo = _photo(rng, shape=(400, 600), at=(100, 200), side=200)
    s2k, kernelnet = KernelEstimator(2, "s2k")(photo), KernelEstimator(2, "kernelnet")(photo)
    assert (s2k.window.height, kernelnet.window.height) == (128, BUDGETS[2])


def test_estimate_cost_does_not_grow_with_the_photo(rng):
    """The estimator sees the budget window, so a photo twice as large (same content at the
    edgy place) gives the same kernel."""
    small = _photo(rng, shape=(600, 900), at=(300, 400), side=128)
    large = np.full((1200, 1800), 0.5, np.float32)
    large[300:428, 400:528] = small[300:428, 400:528]
    a = estimate_kernel(small, sf=2, model="kernelnet", budget=128)
    b = estimate_kernel(large, sf=2, model="kernelnet", budget=128)
    assert (a.window.y, a.window.x) == (b.window.y, b.window.x)
    np.testing.assert_allclose(a.kernel, b.kernel, atol=1e-6)
