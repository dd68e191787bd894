import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mobile_kernelnet.kernels import kernel_size
from mobile_kernelnet.models.s2k import CONFIGS, S2K, AmplitudeSpectrum, PatchDiscriminator, total_variation
from mobile_kernelnet.spectral import Spectral


@pytest.mark.parametrize("h,w,expected", [(64, 64, 1), (96, 64, 2), (128, 128, 9), (252, 252, 36), (40, 50, 1),
                                          (1000, 64, 7)])
def test_welch_crop_rule(h, w, expected):
    spec = AmplitudeSpectrum(64, 7, Spectral("torch"))
    crops = spec.crops(torch.rand(1, 1, h, w))
    assert crops.shape == (1, expected, 64, 64)


def test_crops_are_centred_and_padded_small_images_keep_content():
    spec = AmplitudeSpectrum(64, 7, Spectral("torch"))
    x = torch.arange(90.0 * 90).reshape(1, 1, 90, 90)
    c = spec.crops(x)  # one crop per axis, offset (90 - 64) // 2 = 13
    assert c.shape[1] == 1 and c[0, 0, 0, 0] == x[0, 0, 13, 13]
    small = torch.rand(1, 1, 40, 64)
    assert torch.equal(spec.crops(small)[0, 0, 12:52], small[0, 0])  # reflect-padded, content centred


def test_spectrum_reflects_the_blur():
    """A wider blur removes high frequencies: the spectrum falls off faster from its centre."""
    from mobile_kernelnet.data import dead_leaves
    from mobile_kernelnet.degrade import blur_np
    from mobile_kernelnet.kernels import gaussian_kernel
    img = dead_leaves(128, np.random.default_rng(0))
    spec = AmplitudeSpectrum(64, 7, Spectral("torch"))
    s_sharp = spec(torch.from_numpy(blur_np(img, gaussian_kernel(15, 0.3, 0.3)))[None, None])[0][0, 0]
    s_blur = spec(torch.from_numpy(blur_np(img, gaussian_kernel(15, 4.0, 4.0)))[None, None])[0][0, 0]
    ring = torch.zeros(64, 64, dtype=torch.bool)
    ring[:8], ring[-8:], ring[:, :8], ring[:, -8:] = True, True, True, True
    def contrast(s):  # centre minus border, in the spectrum's standardised units
        return s[28:36, 28:36].mean() - s[ring].mean()
    assert contrast(s_blur) > contrast(s_sharp) + 1.0


@pytest.mark.parametrize("sf", [2, 4])
def test_shapes_backends_and_invariants(sf):
    torch.manual_seed(0)
    model = S2K(sf, CONFIGS["mobile"]).eval()
    x = torch.rand(2, 1, 130, 150)
    with torch.no_grad():
        out = model.stages(x)
        k_m = model.set_spectral_backend("matmul")(x)
    K = kernel_size(sf)
    assert out["spectrum"].shape == out["kernel_map"].shape == (2, 1, 64, 64)
    assert out["kernel"].shape == (2, 1, K, K) and torch.all(out["kernel"] >= 0)
    assert torch.allclose(out["kernel"].sum(dim=(-2, -1)), torch.ones(2, 1), atol=1e-5)
    assert (k_m - out["kernel"]).abs().max() < 1e-5


def test_level_planes_carry_the_noise_floor_that_standardising_removes():
    """The standardised spectrum of a blurred image barely tells sigma 0.002 from 0.02 noise
    once the contrast changes too; the log spectrum's mean (a level plane) does, and the
    U-Net of a ``level_input`` model sees it as constant planes 2 and 3."""
    from dataclasses import replace
    from mobile_kernelnet.data import dead_leaves
    from mobile_kernelnet.degrade import blur_np
    from mobile_kernelnet.kernels import gaussian_kernel
    base = blur_np(dead_leaves(128, np.random.default_rng(0)), gaussian_kernel(15, 2.0, 2.0))
    noise = np.random.default_rng(1).standard_normal(base.shape).astype(np.float32)
    spec = AmplitudeSpectrum(64, 7, Spectral("torch"))
    means = {}
    for contrast in (0.3, 1.0):
        for sigma in (0.002, 0.02):
            x = (0.5 + contrast * (base - base.mean()) + sigma * noise).astype(np.float32)
            _, mean, _ = spec(torch.from_numpy(x)[None, None])
            means[contrast, sigma] = float(mean)
    assert min(means[c, 0.02] for c in (0.3, 1.0)) > max(means[c, 0.002] for c in (0.3, 1.0))
    model = S2K(2, replace(CONFIGS["mobile"], level_input=True)).eval()
    gen = model.generator
    assert gen.inp.in_channels == 3
    seen = {}
    gen.register_forward_pre_hook(lambda m, args: seen.update(args=args))
    with torch.no_grad():
        k = model(torch.from_numpy(base)[None, None])
        spectrum, (mean, std) = seen["args"]
        planes = torch.cat([spectrum, mean.expand_as(spectrum), std.expand_as(spectrum)], dim=1)
        expected = F.conv2d(planes, gen.inp.weight, gen.inp.bias, stride=2, padding=1)
        assert torch.allclose(gen.first(spectrum, (mean, std)), expected, atol=1e-5)
    assert k.shape == (1, 1, kernel_size(2), kernel_size(2))


def test_paper_config_is_seven_levels_on_256():
    model = S2K(2, CONFIGS["paper"])
    assert len(model.generator.down) == 7 and model.config.spectrum_size == 256


def test_discriminator_and_tv():
    d = PatchDiscriminator(8)
    assert d(torch.rand(3, 1, 64, 64), torch.rand(3, 1, 15, 15)).shape == (3, 1, 8, 8)
    flat = torch.full((1, 1, 5, 5), 0.04)
    spike = torch.zeros(1, 1, 5, 5)
    spike[..., 2, 2] = 1
    assert total_variation(flat) == 0 and total_variation(spike) == pytest.approx(4.0)
