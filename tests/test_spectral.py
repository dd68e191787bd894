import numpy as np
import pytest
import torch
from torch.overrides import TorchFunctionMode

from mobile_kernelnet import spectral as S

# every transform size the models use: LR images (training patch, test-set sizes) and FFT-2 grids
SIZES = [(96, 96), (252, 252), (168, 168), (126, 126), (101, 87), (31, 31), (39, 39), (47, 47)]


def _rel(a, b):
    return (a - b).abs().max().item() / b.abs().max().item()


@pytest.mark.parametrize("h,w", SIZES)
def test_matmul_rfft2_matches_torch(h, w):
    x = torch.randn(2, 3, h, w, generator=torch.Generator().manual_seed(h * w))
    ref = S.Spectral("torch").rfft2(x)
    out = S.Spectral("matmul").rfft2(x)
    assert out[0].shape == (2, 3, h, w // 2 + 1)
    assert _rel(out[0], ref[0]) < 1e-5 and _rel(out[1], ref[1]) < 1e-5


@pytest.mark.parametrize("h,w", SIZES)
def test_matmul_irfft2_matches_torch_and_inverts(h, w):
    x = torch.randn(2, h, w, generator=torch.Generator().manual_seed(h + w))
    z = S.Spectral("torch").rfft2(x)
    out = S.Spectral("matmul").irfft2(z, (h, w))
    assert _rel(out, S.Spectral("torch").irfft2(z, (h, w))) < 1e-5
    assert _rel(out, x) < 1e-5


def test_complex_helpers():
    g = torch.Generator().manual_seed(0)
    a = (torch.randn(5, generator=g), torch.randn(5, generator=g))
    b = (torch.randn(5, generator=g), torch.randn(5, generator=g))
    za, zb = torch.complex(*a), torch.complex(*b)
    assert torch.allclose(torch.complex(*S.cmul(a, b)), za * zb, atol=1e-6)
    assert torch.allclose(torch.complex(*S.conj(a)), za.conj())
    assert torch.allclose(S.abs2(a), za.abs() ** 2, atol=1e-5)
    for n in range(1, 17):
        assert torch.allclose(torch.complex(*S.cpow(a, n)), za ** n, rtol=1e-4, atol=1e-5), n
    with pytest.raises(ValueError):
        S.cpow(a, 0)


def test_circular_placement_roundtrip():
    k = torch.arange(81.0).reshape(1, 9, 9)
    c = S.circular_from_centered(k, 31)
    assert c[0, 0, 0] == k[0, 4, 4] and c[0, -1, -1] == k[0, 3, 3] and c[0, 0, 1] == k[0, 4, 5]
    assert torch.equal(S.centered_crop_from_circular(c, 9), k)
    # matches numpy's fftshift convention
    x = torch.randn(16, 16)
    np.testing.assert_array_equal(S.centered_crop_from_circular(x, 15).numpy(),
                                  np.fft.fftshift(x.numpy())[1:, 1:])


class _Recorder(TorchFunctionMode):
    def __init__(self):
        super().__init__()
        self.calls = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        self.calls.append((func, args))
        return func(*args, **(kwargs or {}))


def test_matmul_backend_uses_only_2d_real_matmuls():
    sp = S.Spectral("matmul")
    x = torch.randn(2, 2, 40, 36)
    with _Recorder() as rec:
        sp.irfft2(sp.rfft2(x), (40, 36))
    names = {getattr(f, "__name__", str(f)) for f, _ in rec.calls}
    assert not any("fft" in n or "complex" in n for n in names), names
    mm = [a for f, a in rec.calls if getattr(f, "__name__", "") == "matmul"]
    assert mm and all(t.ndim == 2 and not t.is_complex() for a in mm for t in a)


def test_unknown_backend():
    with pytest.raises(ValueError, match="backend"):
        S.Spectral("cufft")


@pytest.mark.parametrize("h,w", [(64, 64), (45, 38), (126, 126)])
def test_full_fft_pair_matches_torch_and_inverts(h, w):
    x = torch.randn(2, h, w, generator=torch.Generator().manual_seed(7))
    ref = torch.fft.fft2(x)
    for backend in S.BACKENDS:
        sp = S.Spectral(backend)
        z = sp.fft2(x)
        assert _rel(z[0], ref.real) < 1e-5 and _rel(z[1], ref.imag) < 1e-5
        assert _rel(sp.ifft2_real(z), x) < 1e-5
