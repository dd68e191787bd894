import numpy as np
import pytest
import torch

from mobile_kernelnet.camera import (LEVELS, TRAINING_RANGES, CameraParams, camera_np, camera_torch,
                                     jpeg_roundtrip)
from mobile_kernelnet.data import HRPatchSampler, training_batch
from mobile_kernelnet.kernels import KernelPool


@pytest.mark.parametrize("level", [0.1, 0.5, 0.9])
def test_noise_variance_follows_a_s_plus_b2(level):
    a, b = 2e-3, 8e-3
    flat = np.full((400, 400), level)
    params = CameraParams(a, b, None)
    y = camera_np(flat, params, np.random.default_rng(0))
    gen = torch.Generator().manual_seed(0)
    yt = camera_torch(torch.full((1, 1, 400, 400), level), [params], gen)[0, 0].numpy()
    want = a * level + b * b + 1 / (12 * 255 ** 2)  # + the 8-bit rounding's uniform error
    for sample in (y, yt):
        var = sample.var()
        # the sample variance of n = 160000 values has relative std sqrt(2 / n) ~ 0.35 %
        assert abs(var / want - 1) < 0.03, (level, var, want)
    # signal dependence: a wrong model (b alone) would be far off at every level
    assert want > 2 * (b * b + 1 / (12 * 255 ** 2))


def test_jpeg_really_compresses(rng):
    smooth = np.clip(np.cumsum(rng.normal(0, 0.01, (128, 128)), axis=1) + 0.5, 0, 1)
    decoded_hi, size_hi = jpeg_roundtrip(smooth, 95)
    decoded_lo, size_lo = jpeg_roundtrip(smooth, 30)
    assert size_lo < size_hi < smooth.size  # smaller than the raw 8-bit bytes
    # blockiness: jumps across 8x8 block edges exceed those inside blocks at low quality
    diff = np.abs(np.diff(decoded_lo, axis=1))
    at_edges = diff[:, 7::8].mean()
    inside = np.delete(diff, np.s_[7::8], axis=1).mean()
    assert at_edges > 1.2 * inside
    assert np.abs(decoded_lo - smooth).mean() > np.abs(decoded_hi - smooth).mean()


def test_fixed_seeds_give_identical_samples(rng):
    lr = rng.random((1, 1, 48, 48)).astype(np.float32)
    p = [LEVELS["high"]]
    one = camera_torch(torch.from_numpy(lr), p, torch.Generator().manual_seed(5))
    two = camera_torch(torch.from_numpy(lr), p, torch.Generator().manual_seed(5))
    other = camera_torch(torch.from_numpy(lr), p, torch.Generator().manual_seed(6))
    assert torch.equal(one, two) and not torch.equal(one, other)
    np.testing.assert_array_equal(camera_np(lr[0, 0], p[0], np.random.default_rng(1)),
                                  camera_np(lr[0, 0], p[0], np.random.default_rng(1)))


def test_training_ranges_keep_clean_images_and_skip_jpeg_sometimes():
    rng = np.random.default_rng(0)
    draws = [TRAINING_RANGES.draw(rng) for _ in range(2000)]
    clean = sum(d is None for d in draws) / len(draws)
    no_jpeg = sum(d is not None and d.jpeg_quality is None for d in draws) / len(draws)
    assert abs(clean - TRAINING_RANGES.clean_prob) < 0.04
    assert 0.1 < no_jpeg < 0.2  # 0.75 x 0.2
    qs = [d.jpeg_quality for d in draws if d is not None and d.jpeg_quality is not None]
    assert min(qs) == 60 and max(qs) == 95


def test_camera_training_batch_is_seeded_and_noisier_than_lab():
    def batch(camera, seed=0):
        rng = np.random.default_rng(seed)
        sampler = HRPatchSampler(64, rng, dead_leaves_prob=1.0, bank_size=2)
        return training_batch(sampler, KernelPool.generate(2, 20, rng), 16, 0.0, camera)

    lab, hr, k = batch(None)
    cam, hr2, k2 = batch(TRAINING_RANGES)
    assert torch.equal(hr, hr2) and torch.equal(k, k2)  # same data, other degradation
    assert torch.equal(batch(TRAINING_RANGES)[0], cam)
    assert (cam - lab).abs().mean() > 2e-3
    assert cam.min() >= 0 and cam.max() <= 1


def test_bad_params_are_refused():
    with pytest.raises(ValueError, match="quality"):
        CameraParams(1e-4, 1e-3, 0)
    with pytest.raises(ValueError, match=">= 0"):
        CameraParams(-1e-4, 1e-3, None)
    with pytest.raises(ValueError, match="settings for a batch"):
        camera_torch(torch.zeros(2, 1, 8, 8), [LEVELS["low"]], torch.Generator())
