import numpy as np
import pytest

from mobile_kernelnet import metrics as M


def _delta(size, r, c):
    k = np.zeros((size, size))
    k[r, c] = 1
    return k


def test_l1_identical_and_disjoint():
    a = _delta(5, 2, 2)
    assert M.kernel_l1(a, a) == 0
    assert M.kernel_l1(a, _delta(5, 2, 3)) == pytest.approx(2.0)


def test_l1_hand_computed_with_normalisation_clipping_and_padding():
    est = np.zeros((3, 3))
    est[1, 1], est[1, 2], est[0, 0] = 3.0, 1.0, -5.0  # negative clipped, then sum 1 -> .75/.25
    gt = _delta(5, 2, 2)                                # centre of the 5x5 == centre of 3x3
    assert M.kernel_l1(est, gt) == pytest.approx(0.25 + 0.25)
    assert M.d_v(est, gt) == pytest.approx(0.5 / 25)


def test_shifted_l1_forgives_small_shifts_only():
    gt = _delta(9, 4, 4)
    assert M.kernel_l1_shifted(_delta(9, 6, 3), gt) == 0
    assert M.kernel_l1(_delta(9, 6, 3), gt) == pytest.approx(2.0)
    assert M.kernel_l1_shifted(_delta(9, 8, 4), gt) == pytest.approx(2.0)  # 4 px > 3


def test_d_s_is_kl_divergence():
    est = np.array([[0, 0, 0], [0, 0.5, 0.5], [0, 0, 0]])
    gt = np.array([[0, 0, 0], [0, 0.75, 0.25], [0, 0, 0]])
    assert M.d_s(est, gt) == pytest.approx(0.5 * np.log(0.5 / 0.75) + 0.5 * np.log(0.5 / 0.25))
    # a tap outside the true support costs log(1 / eps), finite
    assert M.d_s(_delta(3, 0, 0), _delta(3, 1, 1)) == pytest.approx(-np.log(M.D_S_EPS))


def test_psnr_known_mse_and_border_crop():
    ref = np.zeros((20, 20))
    img = np.full((20, 20), 0.1)
    assert M.psnr(img, ref) == pytest.approx(20.0)
    img2 = ref.copy()
    img2[:2, :] = 1.0  # damage only inside the 2-px border
    assert M.psnr(img2, ref, sf=2) == float("inf")
    assert M.psnr(img2, ref, sf=0) < 20


def test_rgb_is_compared_on_y():
    white = np.ones((16, 16, 3))
    assert M.rgb_to_y(white)[0, 0] == pytest.approx(235 / 255, abs=1e-3)
    assert M.rgb_to_y(np.zeros((2, 2, 3)))[0, 0] == pytest.approx(16 / 255)
    # a chroma change orthogonal to the Y weights leaves PSNR on Y untouched
    a = np.full((16, 16, 3), 0.5)
    w = np.array([65.481, 128.553, 24.966])
    d = np.cross(w, [1.0, 0.0, 0.0])
    assert M.psnr(a + 0.1 * d / np.abs(d).max(), a) == float("inf")


def test_ssim(rng):
    a = rng.random((32, 32))
    assert M.ssim(a, a) == pytest.approx(1.0)
    assert M.ssim(a, np.clip(a + rng.normal(0, 0.2, a.shape), 0, 1)) < 0.9
    with pytest.raises(ValueError):
        M.ssim(a, a[:10])


def test_paired_bootstrap_interval_brackets_the_mean_difference_and_pairs_the_cases():
    from mobile_kernelnet.metrics import paired_mean_difference_ci
    rng = np.random.default_rng(0)
    base = rng.uniform(0.1, 0.9, 200)                  # case difficulty varies a lot ...
    run = base + 0.02 + rng.normal(0, 0.01, 200)       # ... the paired difference hardly at all
    lo, hi = paired_mean_difference_ci(run, base)
    assert lo < (run - base).mean() < hi and 0.015 < lo and hi < 0.025
    assert paired_mean_difference_ci(base, base) == (0.0, 0.0)
    with pytest.raises(ValueError, match="equal-length"):
        paired_mean_difference_ci(run, base[:10])
