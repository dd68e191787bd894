from pathlib import Path

import numpy as np
import pytest
import pywt.data
import skimage.data
from scipy.ndimage import median_filter
from skimage.transform import rescale

from mobile_kernelnet import data, gallery, textures
from mobile_kernelnet.kernels import KernelPool


def test_dead_leaves_range_and_determinism():
    a = data.dead_leaves(96, np.random.default_rng(3))
    b = data.dead_leaves(96, np.random.default_rng(3))
    assert a.shape == (96, 96) and a.dtype == np.float32
    assert 0 <= a.min() and a.max() <= 1
    assert np.array_equal(a, b)
    assert len(np.unique(a)) > 50  # many shapes, textured
    assert not np.array_equal(a, data.dead_leaves(96, np.random.default_rng(4)))


def test_packaged_images_are_not_test_images():
    imgs = data.packaged_images()
    assert len(imgs) >= 4
    for name, img in imgs.items():
        assert img.ndim == 2 and img.dtype == np.float32 and 0 <= img.min() <= img.max() <= 1, name
        assert gallery.matching_gallery_image(img) is None, name


@pytest.mark.parametrize("img", [skimage.data.camera(), pywt.data.camera(), skimage.data.astronaut(),
                                 rescale(skimage.data.coffee(), 0.37, channel_axis=-1)])
def test_guard_refuses_gallery_images_and_copies(img):
    with pytest.raises(gallery.TestImageInTrainingError):
        gallery.refuse_test_image(img, "candidate")


def test_guard_refuses_files_from_skimage_data_dir():
    path = Path(skimage.data.__file__).parent / "chelsea.png"
    assert path.is_file()
    with pytest.raises(gallery.TestImageInTrainingError, match="test set"):
        gallery.refuse_test_image(np.zeros((8, 8)), str(path))


def test_patch_sampler_and_training_batch(rng):
    sampler = data.HRPatchSampler(96, rng, dead_leaves_prob=0.5, bank_size=4)
    pool = KernelPool.generate(3, 12, rng)
    lr, hr, k = data.training_batch(sampler, pool, 6, noise_max=0.02)
    assert hr.shape == (6, 1, 96, 96) and lr.shape == (6, 1, 32, 32) and k.shape == (6, 19, 19)
    q = lr.numpy() * 255
    assert np.allclose(q, np.round(q), atol=1e-3) and lr.min() >= 0 and lr.max() <= 1
    assert any(np.array_equal(kk, pk) for kk in k.numpy()[:1] for pk in pool.kernels)


def test_sampler_names_its_natural_sources_and_refuses_oversized_patches(rng):
    small = data.HRPatchSampler(256, rng, bank_size=1)
    assert len(small.natural_sources) == len(data.packaged_images())
    big = data.HRPatchSampler(512, rng, bank_size=1)
    assert 0 < len(big.natural_sources) < len(small.natural_sources)
    with pytest.raises(ValueError, match="smaller patch"):
        data.HRPatchSampler(2048, rng, bank_size=0)


@pytest.mark.parametrize("make", [textures.power_law_noise, textures.tiling])
def test_textures_range_and_determinism(make):
    a, b = make(64, np.random.default_rng(5)), make(64, np.random.default_rng(5))
    assert a.shape == (64, 64) and a.dtype == np.float32 and 0 <= a.min() < a.max() <= 1
    assert np.array_equal(a, b) and not np.array_equal(a, make(64, np.random.default_rng(6)))


def _amplitude(img: np.ndarray) -> np.ndarray:
    return np.abs(np.fft.fft2(img - img.mean()))


def test_power_law_noise_falls_with_frequency():
    amp = _amplitude(textures.power_law_noise(128, np.random.default_rng(0)))
    f = np.hypot(*np.meshgrid(np.fft.fftfreq(128), np.fft.fftfreq(128), indexing="ij"))
    assert amp[(f > 0) & (f < 0.05)].mean() > 4 * amp[f > 0.3].mean()


def test_tiling_is_periodic():
    """A periodic pattern has spectral lines far above their neighbourhood; noise does not."""
    rng = np.random.default_rng(1)

    def line_strength(img: np.ndarray) -> float:
        amp = np.fft.fftshift(_amplitude(img))
        return float((amp / (median_filter(amp, 9) + 1e-9)).max())

    tilings = [line_strength(textures.tiling(128, rng)) for _ in range(8)]
    noises = [line_strength(textures.power_law_noise(128, rng)) for _ in range(8)]
    assert np.median(tilings) > 4 * np.median(noises)


def test_sampler_texture_share(rng):
    only_textures = data.HRPatchSampler(640, rng, dead_leaves_prob=0.0, texture_prob=1.0, bank_size=1)
    assert only_textures().shape == (640, 640)  # larger than every natural image: allowed, never drawn
    with pytest.raises(ValueError, match="at most 1"):
        data.HRPatchSampler(64, rng, dead_leaves_prob=0.6, texture_prob=0.5, bank_size=1)
    with pytest.raises(ValueError, match=">= 0"):  # what --texture-prob 0.7 would ask for
        data.HRPatchSampler(64, rng, dead_leaves_prob=0.5 - 0.7, texture_prob=0.7, bank_size=1)
