import numpy as np
import pytest
import torch

from mobile_kernelnet.degrade import blur_np, decimate, degrade_np, degrade_torch
from mobile_kernelnet.kernels import gaussian_kernel, random_kernel


def _delta(size=7, at=None):
    k = np.zeros((size, size), np.float32)
    k[at or (size // 2, size // 2)] = 1
    return k


def test_delta_kernel_at_sf1_returns_image(rng):
    x = rng.random((40, 50)).astype(np.float32)
    assert np.allclose(degrade_np(x, _delta(), 1), x, atol=1e-6)
    t = torch.from_numpy(x)[None, None]
    assert torch.allclose(degrade_torch(t, torch.from_numpy(_delta())[None], 1), t, atol=1e-6)


@pytest.mark.parametrize("sf", [2, 3, 4])
def test_constant_image_stays_constant(sf, rng):
    x = np.full((48, 48), 0.37, np.float32)
    k = random_kernel("motion", sf, rng)
    assert np.allclose(degrade_np(x, k, sf), 0.37, atol=1e-6)
    y = degrade_torch(torch.from_numpy(x)[None, None], torch.from_numpy(k)[None], sf)
    assert torch.allclose(y, torch.tensor(0.37), atol=1e-6)


def test_decimation_phase_zero_and_output_size(rng):
    x = rng.random((13, 17)).astype(np.float32)
    y = degrade_np(x, _delta(), 3)
    assert y.shape == (5, 6)
    assert np.allclose(y, x[0::3, 0::3], atol=1e-6)
    assert np.array_equal(decimate(x, 3), x[::3, ::3])


def test_convolution_not_correlation():
    # An off-centre delta at (row c+1, col c) shifts the image *down* by one pixel.
    x = np.zeros((20, 20), np.float32)
    x[5, 5] = 1
    k = _delta(at=(4, 3))
    y = blur_np(x, k)
    assert y[6, 5] == pytest.approx(1.0, abs=1e-6)
    yt = degrade_torch(torch.from_numpy(x)[None, None], torch.from_numpy(k)[None], 1)
    assert yt[0, 0, 6, 5].item() == pytest.approx(1.0, abs=1e-6)


def test_reflect_boundary_whole_sample():
    x = np.tile(np.arange(10, dtype=np.float32), (10, 1))
    k = np.zeros((3, 3), np.float32)
    k[1, 2] = 1  # y[i, j] = x[i, j - 1]
    y = blur_np(x, k)
    assert y[0, 0] == pytest.approx(x[0, 1])  # reflect: x[-1] == x[1]


def test_numpy_and_torch_agree(rng):
    xs = rng.random((3, 64, 72)).astype(np.float32)
    ks = np.stack([random_kernel(f, 2, rng) for f in ("gaussian", "motion", "disk")])
    ref = np.stack([degrade_np(x, k, 2) for x, k in zip(xs, ks)])
    out = degrade_torch(torch.from_numpy(xs)[:, None], torch.from_numpy(ks), 2)[:, 0].numpy()
    assert np.allclose(out, ref, atol=2e-6)


def test_noise_level(rng):
    x = np.full((256, 256), 0.5, np.float32)
    k = gaussian_kernel(7, 1.0, 1.0)
    y = degrade_np(x, k, 2, noise_sigma=0.05, rng=rng)
    assert abs(float(y.std()) - 0.05) < 0.003
    g = torch.Generator().manual_seed(0)
    yt = degrade_torch(torch.from_numpy(x)[None, None].repeat(2, 1, 1, 1), torch.from_numpy(k)[None].repeat(2, 1, 1),
                       2, torch.tensor([0.0, 0.1]), generator=g)
    assert yt[0].std().item() < 1e-6 and abs(yt[1].std().item() - 0.1) < 0.005
    with pytest.raises(ValueError):
        degrade_np(x, k, 2, noise_sigma=0.1)


def test_image_too_small_for_kernel():
    with pytest.raises(ValueError, match="too small"):
        degrade_np(np.zeros((6, 6), np.float32), gaussian_kernel(15, 1, 1), 2)
