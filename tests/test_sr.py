import numpy as np
import pytest
import torch

from mobile_kernelnet.cli import main
from mobile_kernelnet.color import rgb_to_ycbcr
from mobile_kernelnet.degrade import degrade_np
from mobile_kernelnet.kernels import gaussian_kernel
from mobile_kernelnet.metrics import psnr
from mobile_kernelnet.spectral import BACKENDS, Spectral
from mobile_kernelnet.sr import (DataStep, SRConfig, SRInputError, super_resolve, super_resolve_luma,
                                 upscale_bicubic)


def _circular_blur_decimate_matrix(k: np.ndarray, h: int, w: int, sf: int) -> np.ndarray:
    """Dense matrix of x -> (x ⊛ k)[::sf, ::sf] with circular boundary (k centred)."""
    r = k.shape[0] // 2
    a = np.zeros((h * w, h * w))
    for i in range(h):
        for j in range(w):
            for di in range(k.shape[0]):
                for dj in range(k.shape[1]):
                    a[i * w + j, ((i - di + r) % h) * w + (j - dj + r) % w] += k[di, dj]
    rows = [i * w + j for i in range(0, h, sf) for j in range(0, w, sf)]
    return a[rows]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("sf", [2, 3])
def test_data_step_is_the_exact_minimiser(backend, sf):
    rng = np.random.default_rng(sf)
    h = w = 6 * sf
    k = rng.random((5, 5))
    k /= k.sum()
    y, z, alpha = rng.random((h // sf, w // sf)), rng.random((h, w)), 0.07
    m = _circular_blur_decimate_matrix(k, h, w, sf)
    dense = np.linalg.solve(m.T @ m + alpha * np.eye(h * w), m.T @ y.ravel() + alpha * z.ravel()).reshape(h, w)
    step = DataStep(torch.from_numpy(y), torch.from_numpy(k), sf, Spectral(backend))
    assert np.abs(step(torch.from_numpy(z), alpha).numpy() - dense).max() < 1e-9


def _sample(sf=2, size=96):
    rng = np.random.default_rng(0)
    from mobile_kernelnet.data import dead_leaves
    hr = dead_leaves(size, rng)
    k = gaussian_kernel(15, 2.0, 1.0, theta=0.3)
    lr = np.clip(degrade_np(hr, k, sf), 0, 1)
    return hr, k, lr


def test_backends_agree_and_true_kernel_beats_bicubic():
    hr, k, lr = _sample()
    cfg = SRConfig(iterations=4)
    a = super_resolve_luma(lr, k, 2, cfg, backend="torch")
    b = super_resolve_luma(lr, k, 2, cfg, backend="matmul")
    assert a.shape == (96, 96) and np.abs(a - b).max() < 1e-5
    assert psnr(a, hr, 2) > psnr(upscale_bicubic(lr, 2), hr, 2) + 1.0


def test_bicubic_is_on_the_phase0_grid():
    rng = np.random.default_rng(1)
    lr = rng.random((20, 24)).astype(np.float32)
    up = upscale_bicubic(lr, 3)
    assert up.shape == (60, 72) and np.allclose(up[::3, ::3], lr, atol=1e-5)


def test_colour_keeps_chroma():
    hr, k, lr = _sample()
    rgb = np.clip(np.stack([lr, 0.8 * lr + 0.1, 0.5 * lr], axis=-1), 0, 1)
    out = super_resolve(rgb, k, 2, SRConfig(iterations=3))
    assert out.shape == (96, 96, 3)
    got, want = rgb_to_ycbcr(out), rgb_to_ycbcr(rgb)
    for c in (1, 2):  # chroma is the bicubic upscale of the input chroma (up to the final clip)
        assert np.abs(got[..., c] - upscale_bicubic(want[..., c], 2)).mean() < 2e-3
    assert np.abs(got[..., 0] - super_resolve_luma(want[..., 0], k, 2, SRConfig(iterations=3))).mean() < 2e-3
    gray = np.repeat(lr[..., None], 3, axis=-1)  # a grey image stays grey
    g = super_resolve(gray, k, 2, SRConfig(iterations=3))
    assert np.abs(g[..., 0] - g[..., 2]).max() < 1e-4


@pytest.mark.parametrize("kernel,why", [
    (np.ones((41, 41)), "larger than the HR image"),
    (np.full((15, 15), np.nan), "NaN"),
    (np.ones((4, 4)), "odd"),
    (-np.ones((5, 5)), "non-negative"),
])
def test_bad_kernels(kernel, why):
    lr = np.random.default_rng(0).random((18, 18)).astype(np.float32)
    with pytest.raises(SRInputError, match=why):
        super_resolve_luma(lr, kernel, 2)


def test_cli_sr_with_given_kernel_and_sf_mismatch(tmp_path, capsys):
    from pathlib import Path
    assets = Path(__file__).resolve().parent.parent / "assets"
    out = tmp_path / "sr.png"
    assert main(["sr", str(assets / "sample_lr.png"), "--sf", "2", "--kernel", str(assets / "sample_kernel.npy"),
                 "--out", str(out)]) == 0
    import imageio.v3 as iio
    assert iio.imread(out).shape == (504, 504) and (tmp_path / "sr_kernel.npy").is_file()
    assert main(["sr", str(assets / "sample_lr.png"), "--sf", "4", "--kernel", str(assets / "sample_kernel.npy"),
                 "--out", str(tmp_path / "bad.png")]) == 2
    assert "sf 2 size" in capsys.readouterr().err
    assert not (tmp_path / "bad.png").exists() and not (tmp_path / "bad_kernel.npy").exists()


def test_noise_estimate_tracks_the_noise_through_texture_and_jpeg():
    from mobile_kernelnet.camera import CameraParams, camera_np
    from mobile_kernelnet.data import packaged_images
    from mobile_kernelnet.sr import estimate_noise
    img = next(iter(packaged_images().values()))[:256, :256]
    rng = np.random.default_rng(0)
    clean = estimate_noise(np.round(img * 255) / 255)
    estimates = [estimate_noise(camera_np(img, CameraParams(0.0, s, 85), rng)) for s in (0.01, 0.02, 0.04)]
    assert clean < 0.006
    assert estimates[0] < estimates[1] < estimates[2]
    for got, want in zip(estimates, (0.01, 0.02, 0.04)):
        assert 0.5 * want < got < 1.5 * want, (got, want)


def test_noise_aware_schedule_beats_the_blind_one_on_noisy_input():
    from mobile_kernelnet.camera import LEVELS
    from mobile_kernelnet.sr import noise_schedule
    from mobile_kernelnet.sr_tuning import tuning_cases
    blind, aware = SRConfig(noise_floor=None), SRConfig(noise_floor=0.0025)
    assert noise_schedule(blind, 0.03) == (blind.mu, blind.sigma_end)
    mu, end = noise_schedule(aware, 0.03)
    assert mu == pytest.approx(blind.mu * (1 + 144)) and end == 0.03
    case = tuning_cases(2, level="high")[0]
    gain = psnr(super_resolve_luma(case["lr"], case["kernel"], 2, aware), case["hr"], 2) - \
        psnr(super_resolve_luma(case["lr"], case["kernel"], 2, blind), case["hr"], 2)
    assert gain > 2.0  # dB; the blind solver amplifies the sensor noise


def test_tiled_sr_matches_the_whole_image_solve():
    from mobile_kernelnet.sr import super_resolve_tiled
    from mobile_kernelnet.sr_tuning import tuning_cases
    c = tuning_cases(2)[5]
    whole = super_resolve(c["lr"], c["kernel"], 2)
    tiled = super_resolve_tiled(c["lr"], c["kernel"], 2, tile=96)
    assert tiled.shape == whole.shape and tiled.dtype == np.float32
    assert abs(psnr(tiled, c["hr"], 2) - psnr(whole, c["hr"], 2)) < 0.05
    assert np.abs(tiled - whole).mean() < 1e-3
    as_u8 = super_resolve_tiled(c["lr"], c["kernel"], 2, tile=96, out_dtype=np.uint8)
    np.testing.assert_array_equal(as_u8, np.round(tiled * 255).astype(np.uint8))


def test_cli_noise_aware_sr_differs_from_the_blind_one(tmp_path):
    import imageio.v3 as iio
    from mobile_kernelnet.camera import LEVELS
    from mobile_kernelnet.sr_tuning import tuning_cases
    case = tuning_cases(2, level="high")[0]
    lr = tmp_path / "noisy.png"
    iio.imwrite(lr, np.round(case["lr"][:80, :80] * 255).astype(np.uint8))
    np.save(tmp_path / "k.npy", case["kernel"])
    for name, extra in (("blind.png", []), ("aware.png", ["--noise-aware"])):
        assert main(["sr", str(lr), "--sf", "2", "--kernel", str(tmp_path / "k.npy"), "--quiet",
                     "--out", str(tmp_path / name), *extra]) == 0
    blind, aware = (iio.imread(tmp_path / n).astype(float) for n in ("blind.png", "aware.png"))
    assert np.abs(np.diff(aware, axis=1)).mean() < np.abs(np.diff(blind, axis=1)).mean()  # less amplified noise
    assert LEVELS["high"].jpeg_quality == 70
