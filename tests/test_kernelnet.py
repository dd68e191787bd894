from dataclasses import replace

import pytest
import torch

from mobile_kernelnet.kernels import gaussian_kernel, kernel_size
from mobile_kernelnet.models.kernelnet import (CONFIGS, FFT1, FFT1_SOLVERS, FFT2, REFINEMENTS, KernelNet, KernelNetConfig,
                                                ResidualWideRefinement, WideRefinement, image_gradients)
from mobile_kernelnet.spectral import Spectral


def _variance_x(k: torch.Tensor) -> float:
    xs = torch.arange(k.shape[-1], dtype=torch.float64) - k.shape[-1] // 2
    return float((k.double() * xs ** 2).sum())


@pytest.mark.parametrize("arch", sorted(REFINEMENTS))
@pytest.mark.parametrize("sf", [2, 3, 4])
def test_stage_shapes_and_invariants(sf, arch):
    torch.manual_seed(0)
    model = KernelNet(sf, replace(CONFIGS["mobile"], refine_arch=arch)).eval()
    with torch.no_grad():
        out = model.stages(torch.rand(2, 1, 72, 80))
    K, L = kernel_size(sf), model.config.klr_size
    assert out["grads"].shape == (2, 2, 72, 80) and out["grads"].abs().max() <= 1
    assert out["k_lr"].shape == (2, 1, L, L) and out["k_coarse"].shape == out["kernel"].shape == (2, 1, K, K)
    for name in ("k_lr", "k_coarse", "kernel"):
        assert torch.all(out[name] >= 0)
        assert torch.allclose(out[name].sum(dim=(-2, -1)), torch.ones(2, 1), atol=1e-5), name


@pytest.mark.parametrize("sf", [2, 3, 4])
def test_wide_refinement_sees_the_whole_kernel(sf):
    K = kernel_size(sf)
    convs = KernelNet(sf, replace(CONFIGS["mobile"], refine_arch="wide")).refine.convs
    assert 1 + sum(c.kernel_size[0] - 1 for c in convs) == K  # receptive field exactly K x K
    assert [c.kernel_size[0] for c in convs][-2:] == [3, 1]


def test_residual_refinement_starts_as_the_identity_and_learns():
    torch.manual_seed(0)
    ref = ResidualWideRefinement(8, 15)
    coarse = torch.rand(3, 1, 15, 15)
    coarse = coarse / coarse.sum(dim=(-2, -1), keepdim=True)
    assert torch.allclose(ref(coarse), coarse, atol=1e-6)
    target = torch.zeros(3, 15, 15)
    target[:, 7, 7] = 1  # a delta: the coarse kernel is far from it
    opt = torch.optim.Adam(ref.parameters(), lr=1e-2)
    loss0 = (ref(coarse)[:, 0] - target).abs().sum()
    for _ in range(30):
        opt.zero_grad()
        (ref(coarse)[:, 0] - target).abs().sum().backward()
        opt.step()
    assert (ref(coarse)[:, 0] - target).abs().sum() < 0.8 * loss0


def test_unknown_refinement_is_refused():
    with pytest.raises(ValueError, match="refine_arch"):
        KernelNet(2, replace(CONFIGS["mobile"], refine_arch="deep"))
    with pytest.raises(ValueError, match="K = 17"):
        WideRefinement(16, 17)


def _blurred_gradients(k: torch.Tensor, seed: int = 1,
                       grads: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Sharp gradients ``(1, 2, N, N)`` (random 64 x 64 unless given) and their circular
    blur by the odd ``(L, L)`` kernel ``k``."""
    if grads is None:
        grads = torch.randn(1, 2, 64, 64, generator=torch.Generator().manual_seed(seed))
    n, r = grads.shape[-1], k.shape[0] // 2
    pad = torch.zeros(n, n, dtype=torch.float64)
    pad[:k.shape[0], :k.shape[1]] = k
    pad = torch.roll(pad, (-r, -r), dims=(0, 1))  # centre at index 0
    return torch.fft.irfft2(torch.fft.rfft2(grads.double()) * torch.fft.rfft2(pad), s=(n, n)).float(), grads


@pytest.mark.parametrize("solver", FFT1_SOLVERS)
@pytest.mark.parametrize("backend", ["torch", "matmul"])
def test_fft1_recovers_a_known_lr_kernel(backend, solver):
    """y = g ⊛ k circularly -> either solver with tiny lambda and no threshold returns k."""
    k = torch.from_numpy(gaussian_kernel(7, 1.2, 0.6, theta=0.5))
    y, grads = _blurred_gradients(k)
    fft1 = FFT1(Spectral(backend), klr_size=7, threshold=0.0, lambda_init=1e-9, border=0, solver=solver)
    with torch.no_grad():
        est = fft1(y, grads)[0, 0]
    assert torch.allclose(est, k.float(), atol=1e-4)


def test_normal_equations_solve_the_support_restricted_least_squares():
    """Correlated gradients and noisy y: the ``normal-equations`` solver returns the
    least-squares kernel on the L x L support (an explicit patch-matrix solve), which
    the per-frequency division of eq. 11 does not."""
    L, n = 7, 48
    gen = torch.Generator().manual_seed(3)
    white = torch.randn(1, 2, n, n, generator=gen, dtype=torch.float64)
    grads = white + torch.roll(white, 1, -1) + 0.5 * torch.roll(white, 1, -2)  # correlated neighbours
    k = torch.from_numpy(gaussian_kernel(L, 1.5, 0.5, theta=1.0))
    y, _ = _blurred_gradients(k, grads=grads)
    y = y.double() + 0.3 * torch.randn(y.shape, generator=gen, dtype=torch.float64)
    r = L // 2
    offsets = [(dy, dx) for dy in range(-r, r + 1) for dx in range(-r, r + 1)]
    patches = torch.stack([torch.roll(grads, (dy, dx), (-2, -1)).reshape(-1) for dy, dx in offsets], dim=1)
    exact = torch.linalg.lstsq(patches, y.reshape(-1, 1)).solution.reshape(L, L)
    exact = exact.clamp(min=0) / exact.clamp(min=0).sum()
    est = {}
    for solver in FFT1_SOLVERS:
        fft1 = FFT1(Spectral("torch"), klr_size=L, threshold=0.0, lambda_init=1e-9, border=0, solver=solver)
        with torch.no_grad():
            est[solver] = fft1(y, grads)[0, 0]
    assert (est["normal-equations"] - exact).abs().sum() < 0.02
    assert (est["eq11"] - exact).abs().sum() > 0.1
    with pytest.raises(ValueError, match="solver"):
        FFT1(Spectral("torch"), 7, 0.1, 1e-9, 0, solver="cg")


def test_soft_threshold_is_continuous_where_the_hard_one_flips_a_tap():
    """A tap 1 % above or below the threshold: the hard mode keeps or drops it whole, the
    soft mode moves it by about 1 % of the threshold; both keep the same support."""
    def kernel(tap_ratio: float) -> torch.Tensor:
        k = torch.from_numpy(gaussian_kernel(7, 0.7, 0.7)).double()
        k[0, 3] = 0.0
        k[0, 3] = tap_ratio * 0.1 * k.max()
        return k / k.sum()

    out = {}
    for mode in ("hard", "soft"):
        fft1 = FFT1(Spectral("torch"), klr_size=7, threshold=0.1, lambda_init=1e-9, border=0, threshold_mode=mode)
        with torch.no_grad():
            out[mode] = [fft1(*_blurred_gradients(kernel(r)))[0, 0] for r in (1.01, 0.99)]
    hard_jump = (out["hard"][0] - out["hard"][1]).abs().max()
    soft_jump = (out["soft"][0] - out["soft"][1]).abs().max()
    assert hard_jump > 0.01 and soft_jump < 0.05 * hard_jump
    above, below = out["soft"]
    assert above.min() >= 0 and float(above.sum()) == pytest.approx(1.0, abs=1e-5)
    assert torch.equal(above > 0, out["hard"][0] > 0)
    with pytest.raises(ValueError, match="threshold_mode"):
        FFT1(Spectral("torch"), 7, 0.1, 1e-9, 0, threshold_mode="ramp")


@pytest.mark.parametrize("copies", [4, 8, 9, 16])
def test_fft2_widens_by_sqrt_of_copies(copies):
    k_lr = torch.from_numpy(gaussian_kernel(9, 0.5, 0.5))[None, None]
    fft2 = FFT2(Spectral("torch"), out_size=23, copies=copies)
    with torch.no_grad():
        k_hr = fft2(k_lr)
    assert _variance_x(k_hr) == pytest.approx(copies * _variance_x(k_lr), rel=1e-3)


def test_sf3_self_convolution_count_is_configurable():
    assert KernelNet(3, CONFIGS["mobile"]).fft2.copies == 9
    assert KernelNet(3, replace(CONFIGS["mobile"], self_convolutions=8)).fft2.copies == 8
    assert KernelNet(2, CONFIGS["paper"]).fft2.copies == 4


@pytest.mark.parametrize("size", [(96, 96), (101, 87)])
def test_backends_give_the_same_kernel(size):
    torch.manual_seed(3)
    model = KernelNet(2, CONFIGS["mobile"]).eval()
    x = torch.rand(2, 1, *size)
    with torch.no_grad():
        ref = model.stages(x)
        model.set_spectral_backend("matmul")
        out = model.stages(x)
    for name in ("k_lr", "k_coarse", "kernel"):
        assert (out[name] - ref[name]).abs().max() < 1e-5, name


def test_image_gradients():
    x = torch.arange(12.0).reshape(1, 1, 3, 4)
    g = image_gradients(x)
    assert torch.equal(g[0, 0], torch.tensor([[1.0, 1, 1, 0]] * 3))
    assert torch.equal(g[0, 1], torch.tensor([[4.0] * 4, [4.0] * 4, [0.0] * 4]))


def test_separable_and_factored_gradient_estimators_are_cheaper_with_the_same_receptive_field():
    from mobile_kernelnet.models.kernelnet import GradientEstimator
    dense, sep, fac = (GradientEstimator(24, arch) for arch in ("dense", "separable", "factored"))
    n = lambda m: sum(p.numel() for p in m.parameters())
    assert n(sep) < n(dense) / 3 and n(fac) < n(sep) * 0.65
    # no full-resolution convolution wider than 3x3, none with two output channels and more than 1x1
    assert all(max(c.kernel_size) <= 3 and (c.out_channels > 2 or c.kernel_size == (1, 1))
               for c in fac.modules() if isinstance(c, torch.nn.Conv2d))
    # an impulse spreads over the same 17 x 17 support (radius 4 + 0 + 1 + 2 + 0 + 1)
    for net in (dense.double(), sep.double(), fac.double()):
        for p in net.parameters():
            torch.nn.init.constant_(p, 1e-2)
        x = torch.zeros(1, 2, 41, 41, dtype=torch.float64)
        x[0, :, 20, 20] = 1
        support = (net(x)[0, 0] != net(torch.zeros_like(x))[0, 0]).nonzero()
        assert support.min().item() == 12 and support.max().item() == 28
    with pytest.raises(ValueError, match="grad_arch"):
        GradientEstimator(24, "tiny")


@pytest.mark.parametrize("full, half, cheaper", [("separable", "half-res", 2.5), ("factored", "half-res-factored", 3),
                                                 ("factored", "half-res-detail", 3)])
def test_half_res_gradient_estimators_are_cheaper_keep_the_size_and_see_further(full, half, cheaper):
    from torch.utils.flop_counter import FlopCounterMode
    from mobile_kernelnet.models.kernelnet import GradientEstimator
    full_net, half_net = GradientEstimator(24, full).double(), GradientEstimator(24, half).double()

    def flops(net):
        with FlopCounterMode(display=False) as counter:
            net(torch.zeros(1, 2, 64, 64, dtype=torch.float64))
        return counter.get_total_flops()
    assert flops(half_net) < flops(full_net) / cheaper
    for p in half_net.parameters():
        torch.nn.init.constant_(p, 1e-2)
    for h, w in ((64, 64), (63, 77)):
        assert half_net(torch.zeros(1, 2, h, w, dtype=torch.float64)).shape == (1, 2, h, w)
    x = torch.zeros(1, 2, 81, 81, dtype=torch.float64)
    x[0, :, 40, 40] = 1
    support = (half_net(x)[0, 0] != half_net(torch.zeros_like(x))[0, 0]).nonzero()
    assert support.max().item() - support.min().item() + 1 > 17   # wider than the full-resolution 17 px


def test_normal_equations_model_runs_eagerly_after_an_onnx_export(tmp_path):
    """The solver's constant matrices are cached; one made while the exporter traces must not
    come back as a traced tensor to a later eager call (parity runs PyTorch after exporting)."""
    fft1 = FFT1(Spectral("matmul"), klr_size=7, threshold=0.05, lambda_init=1e-4, border=2,
                solver="normal-equations", threshold_mode="soft").eval()
    y, grads = torch.randn(1, 2, 40, 40), torch.randn(1, 2, 40, 40)
    torch.onnx.export(fft1, (y, grads), tmp_path / "fft1.onnx", dynamo=True)
    with torch.no_grad():
        assert fft1(y, grads).numpy().shape == (1, 1, 7, 7)


def test_each_fft1_solver_starts_from_its_own_lambda():
    """eq. 11's lambda is per pixel, the normal equations' acts on their scaled system: a model
    built for either solver starts from that solver's config value, not the other's."""
    cfg = KernelNetConfig(grad_channels=4, refine_channels=4)
    for solver, expected in (("eq11", cfg.lambda_init), ("normal-equations", cfg.ne_lambda_init)):
        net = KernelNet(2, replace(cfg, fft1_solver=solver))
        assert float(net.fft1.log_lambda.exp()) == pytest.approx(expected, rel=1e-6)


def test_normal_equations_see_the_same_ranges_for_dim_and_bright_scenes():
    """FFT-1's normal equations scale each gradient pair to unit energy: the kernel is
    unchanged (a per-image scale of either pair only scales ``b``), and the tensors the
    spectra are made of no longer depend on the scene's contrast or sparsity (int16 has
    fixed scales)."""
    from mobile_kernelnet.models.kernelnet import unit_energy

    torch.manual_seed(0)
    y, g = torch.randn(2, 2, 48, 48), torch.randn(2, 2, 48, 48)
    sparse = g * (torch.rand_like(g) < 0.02)
    assert torch.allclose(unit_energy(0.02 * g), unit_energy(g), rtol=1e-5, atol=1e-6)
    for grads in (g, sparse, 0.01 * sparse):
        assert torch.allclose((unit_energy(grads) ** 2).mean(dim=(1, 2, 3)), torch.ones(2), rtol=1e-4)
    cfg = KernelNetConfig(grad_channels=4, refine_channels=4, fft1_solver="normal-equations")
    fft1 = KernelNet(2, cfg).fft1
    with torch.no_grad():
        assert torch.allclose(fft1(0.05 * y, 7.0 * g), fft1(y, g), atol=1e-6)
