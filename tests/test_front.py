import numpy as np
import pytest
import torch

from mobile_kernelnet.data import packaged_images
from mobile_kernelnet.estimation import KernelEstimator
from mobile_kernelnet.front import FrontStage, estimate_noise
from mobile_kernelnet.models import create_model
from mobile_kernelnet.models.registry import model_entry


@pytest.fixture(scope="module")
def photo():
    """A 192 x 192 natural image in 8-bit steps and the same with white noise of std 0.02."""
    img = np.round(next(iter(packaged_images().values()))[:192, :192] * 255) / 255
    noisy = np.clip(img + np.random.default_rng(0).normal(0, 0.02, img.shape), 0, 1)
    return img.astype(np.float32), noisy.astype(np.float32)


def test_front_stage_removes_noise_and_leaves_a_clean_image_almost_as_it_is(photo):
    clean, noisy = photo
    front = FrontStage(h_per_sigma=1.2)
    out, sigma = front(noisy)
    assert out.dtype == np.float32 and out.shape == noisy.shape
    assert 0.01 < sigma < 0.03  # the noise it measured
    assert np.mean((out - clean) ** 2) < 0.5 * np.mean((noisy - clean) ** 2)
    kept, clean_sigma = front(clean)
    assert clean_sigma < 0.006 and np.abs(kept - clean).mean() < 0.5 / 255


def test_a_noiseless_window_goes_through_untouched():
    flat = np.zeros((64, 64), np.float32)
    flat[:, 32:] = 1.0  # one edge, no noise: the estimate is 0
    out, sigma = FrontStage(1.0)(flat)
    assert sigma == 0 and np.array_equal(out, flat)


def test_front_stage_record_round_trips_and_bad_ones_are_refused():
    front = FrontStage(0.8, patch_size=3)
    assert FrontStage.from_dict(front.as_dict()) == front and FrontStage.from_dict(None) is None
    with pytest.raises(ValueError, match="unknown front-stage denoiser"):
        FrontStage.from_dict({"denoiser": "median", "h_per_sigma": 1.0})
    with pytest.raises(ValueError, match="h_per_sigma > 0"):
        FrontStage(0.0)


def test_estimator_runs_the_model_on_the_denoised_window_unless_told_not_to(photo):
    _, noisy = photo
    front = model_entry("kernelnet").front
    model = create_model("kernelnet", 2)
    with torch.inference_mode():
        on_denoised = model(torch.from_numpy(front(noisy)[0])[None, None])[0, 0].numpy()
        on_raw = model(torch.from_numpy(noisy)[None, None])[0, 0].numpy()
    est = KernelEstimator(2, "kernelnet")(noisy)
    np.testing.assert_allclose(est.kernel, on_denoised, atol=1e-6)
    assert est.front == front and est.noise_sigma == pytest.approx(estimate_noise(noisy))
    assert est.front_record()["noise_sigma"] == est.noise_sigma
    raw = KernelEstimator(2, "kernelnet", denoise=False)(noisy)
    np.testing.assert_allclose(raw.kernel, on_raw, atol=1e-6)
    assert raw.front is None and raw.front_record() is None
    assert np.abs(on_denoised - on_raw).max() > 1e-3  # the front stage changed what the model saw
