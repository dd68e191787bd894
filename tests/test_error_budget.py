import numpy as np
import pytest
import torch

from mobile_kernelnet.cli import main
from mobile_kernelnet.error_budget import STAGES, error_budget, fft2_floor
from mobile_kernelnet.estimation import estimate
from mobile_kernelnet.kernels import gaussian_kernel
from mobile_kernelnet.metrics import kernel_l1
from mobile_kernelnet.models import create_model


def test_fft2_floor_finds_a_kernel_fft2_can_make():
    """A kernel that *is* FFT-2 of some LR kernel has a floor near 0; a disk-like flat
    kernel, which self-convolution cannot make, does not."""
    model = create_model("kernelnet", 2, "mobile", pretrained=False)
    k_lr = torch.from_numpy(gaussian_kernel(9, 1.3, 0.5, theta=0.4))[None, None]
    reachable = model.fft2(k_lr)[0, 0].numpy()
    flat = np.zeros_like(reachable)
    c = flat.shape[0] // 2
    flat[c - 3:c + 4, c - 3:c + 4] = 1 / 49
    floors = fft2_floor(model, np.stack([reachable, flat]), steps=600)
    assert kernel_l1(floors[0], reachable) < 0.03
    assert kernel_l1(floors[1], flat) > 0.15


def test_error_budget_is_consistent_with_eval(testset_sf4):
    """The refined stage is exactly what `mkn eval` scores; the floor is below the coarse
    output on every image (the coarse kernel is one FFT-2 output); the oracle stage uses
    other gradients than the model's, so it differs from the coarse one."""
    res = error_budget(testset_sf4, floor_steps=400)
    rows = res["per_image"]
    assert set(res["stages"]) == set(STAGES) and len(rows) == res["testset"]["n"]
    for row in rows[:3]:
        k = estimate(str(testset_sf4 / f"{row['stem']}.png"), sf=4, model="kernelnet")
        assert row["refined"] == pytest.approx(kernel_l1(k, np.load(testset_sf4 / f"{row['stem']}.npy")), abs=1e-6)
    assert all(r["fft2_floor"] <= r["coarse"] + 1e-3 for r in rows)
    assert any(abs(r["oracle_gradients"] - r["coarse"]) > 1e-3 for r in rows)
    assert res["stages"]["refined"]["overall"] == pytest.approx(np.mean([r["refined"] for r in rows]))


def test_cli_refuses_two_modes(testset_sf4, capsys):
    assert main(["eval", "--testset", str(testset_sf4.parent), "--sf", "4", "--sr", "--error-budget"]) == 2
    assert "choose one" in capsys.readouterr().err
