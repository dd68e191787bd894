import numpy as np
import pytest

from mobile_kernelnet import kernels as K


@pytest.mark.parametrize("sf", K.SCALE_FACTORS)
@pytest.mark.parametrize("family", K.FAMILIES)
def test_family_invariants(family, sf, rng):
    for _ in range(20):
        k = K.random_kernel(family, sf, rng)
        assert k.dtype == np.float32
        assert k.shape == (K.kernel_size(sf),) * 2 and k.shape[0] % 2 == 1
        assert k.min() >= 0
        assert abs(float(k.sum()) - 1) < 1e-5
        cy, cx = K.center_of_mass(k)
        tol = 0.35 if family == "gaussian" else 1e-3  # a Gaussian's tails are cut by the square
        assert abs(cy - k.shape[0] // 2) < tol and abs(cx - k.shape[1] // 2) < tol


def test_gaussian_has_requested_covariance():
    k = K.gaussian_kernel(41, 6.0, 2.0, theta=np.pi / 6).astype(np.float64)
    ys, xs = np.mgrid[0:41, 0:41] - 20
    cov = np.array([[np.sum(k * xs * xs), np.sum(k * xs * ys)], [np.sum(k * xs * ys), np.sum(k * ys * ys)]])
    evals, evecs = np.linalg.eigh(cov)
    assert np.allclose(evals, [2.0, 6.0], rtol=1e-3)
    major = evecs[:, 1]
    assert abs(abs(major @ [np.cos(np.pi / 6), np.sin(np.pi / 6)]) - 1) < 1e-4


def test_gaussian_noise_needs_rng_and_changes_taps(rng):
    with pytest.raises(ValueError):
        K.gaussian_kernel(15, 2.0, 1.0, noise_level=0.3)
    clean = K.gaussian_kernel(15, 2.0, 1.0)
    noisy = K.gaussian_kernel(15, 2.0, 1.0, noise_level=0.3, rng=rng)
    assert np.abs(noisy - clean).max() > 1e-3 and abs(noisy.sum() - 1) < 1e-5


def test_disk_area_and_antialiasing():
    r = 3.3
    k = K.disk_kernel(15, r)
    # Interior taps equal, edge taps fractional (anti-aliased), support ~ pi r^2
    assert np.isclose(k[7, 7], k[7, 8]) and np.isclose(k[7, 7], k.max())
    frac = k / k.max()
    assert np.any((frac > 0.05) & (frac < 0.95))
    assert abs(frac.sum() - np.pi * r * r) < 0.5


def test_motion_kernel_length_and_fit(rng):
    line = np.stack([np.zeros(100), np.linspace(0, 1, 100)], axis=1)
    k = K.motion_kernel(15, line, length=8.0)
    cols = np.nonzero(k.sum(axis=0) > 1e-6)[0]
    assert 8 <= cols[-1] - cols[0] + 1 <= 10          # a horizontal line of ~8 px
    assert np.count_nonzero(k.sum(axis=1) > 1e-6) <= 2  # one or two rows (bilinear)
    long = K.motion_kernel(15, line, length=100.0)      # shrunk to fit in K - 3
    assert np.count_nonzero(long.sum(axis=0) > 1e-6) <= 14


def test_camera_trajectory_unit_length(rng):
    path = K.camera_trajectory(rng, n_steps=500)
    assert path.shape == (500, 2)
    assert np.isclose(np.linalg.norm(np.diff(path, axis=0), axis=1).sum(), 1.0)


def test_center_crop_or_pad_roundtrip():
    k = np.arange(25, dtype=np.float32).reshape(5, 5)
    big = K.center_crop_or_pad(k, 9)
    assert big.shape == (9, 9) and big[4, 4] == k[2, 2] and big.sum() == k.sum()
    assert np.array_equal(K.center_crop_or_pad(big, 5), k)
    with pytest.raises(ValueError):
        K.center_crop_or_pad(np.ones((4, 4)), 3)


def test_normalize_rejects_bad_kernels():
    with pytest.raises(ValueError):
        K.normalize_kernel(np.full((3, 3), np.nan))
    with pytest.raises(ValueError):
        K.normalize_kernel(-np.ones((3, 3)))


def test_unknown_family_and_sf():
    with pytest.raises(ValueError):
        K.random_kernel("bokeh", 2, np.random.default_rng(0))
    with pytest.raises(ValueError):
        K.kernel_size(5)


def test_self_convolution_adds_variances():
    k = K.gaussian_kernel(15, 2.0, 2.0)
    assert np.isclose(_variance_x(K.self_convolve(k, 2, 21)), 4.0, rtol=2e-3)


def test_pool_generate_save_load_and_sample(tmp_path, rng):
    pool = K.KernelPool.generate(2, 30, rng, weights={"gaussian": 1, "disk": 1})
    assert set(pool.families) <= {"gaussian", "disk"} and len(pool) == 30
    pool.save(tmp_path / "pool.npz")
    back = K.KernelPool.load(tmp_path / "pool.npz")
    assert back.sf == 2 and np.array_equal(back.kernels, pool.kernels)
    assert list(back.families) == list(pool.families)
    assert pool.sample(rng, 7).shape == (7, 15, 15)


def _variance_x(k: np.ndarray) -> float:
    xs = np.arange(k.shape[1]) - k.shape[1] // 2
    return float(np.sum(k.astype(np.float64) * xs[None, :] ** 2))


@pytest.mark.parametrize("sf,copies", [(3, 2), (4, 4)])
def test_pool_extension_from_sf2(sf, copies):
    # variances small enough that the sf 3/4 kernels are not truncated by the square
    ks = np.stack([K.gaussian_kernel(15, v, v) for v in (0.8, 1.2, 2.0)])
    pool2 = K.KernelPool(2, ks, ["gaussian"] * 3)
    ext = K.KernelPool.extended_from_sf2(pool2, sf)
    assert ext.sf == sf and ext.kernels.shape == (3, K.kernel_size(sf), K.kernel_size(sf))
    assert all(f == "gaussian-selfconv" for f in ext.families)
    for k2, k in zip(pool2.kernels, ext.kernels):
        assert np.isclose(_variance_x(k), copies * _variance_x(k2), rtol=1e-3)
    with pytest.raises(ValueError):
        K.KernelPool.extended_from_sf2(ext, 4)


def test_pool_concat(rng):
    a = K.KernelPool.generate(3, 4, rng)
    b = K.KernelPool.extended_from_sf2(K.KernelPool.generate(2, 2, rng), 3)
    c = K.KernelPool.concat([a, b])
    assert len(c) == 6 and np.array_equal(c.kernels[4:], b.kernels) and c.families[-1].endswith("-selfconv")
    with pytest.raises(ValueError):
        K.KernelPool.concat([a, K.KernelPool.generate(2, 1, rng)])
