import numpy as np
import pytest
import torch
from torch.overrides import TorchFunctionMode

from mobile_kernelnet import spectral as S

# every transform size the models use: LR images (training patch, test-set sizes) and FFT-2 grids
SIZES = [(96, 96), (252, 252), (168, 168), (126, 126), (101, 87), (31, 31), (39, 39), (47, 47)]


def _rel(a, b):
    return (a - b).abs().max().item() / b.abs().max().item()


MATMUL_BACKENDS = [b for b in S.BACKENDS if b != "torch"]


@pytest.mark.parametrize("backend", MATMUL_BACKENDS)
@pytest.mark.parametrize("h,w", SIZES)
def test_matmul_rfft2_matches_torch(h, w, backend):
    x = torch.randn(2, 3, h, w, generator=torch.Generator().manual_seed(h * w))
    ref = S.Spectral("torch").rfft2(x)
    out = S.Spectral(backend).rfft2(x)
    assert out[0].shape == (2, 3, h, w // 2 + 1)
    assert _rel(out[0], ref[0]) < 1e-5 and _rel(out[1], ref[1]) < 1e-5


@pytest.mark.parametrize("backend", MATMUL_BACKENDS)
@pytest.mark.parametrize("h,w", SIZES)
def test_matmul_irfft2_matches_torch_and_inverts(h, w, backend):
    x = torch.randn(2, h, w, generator=torch.Generator().manual_seed(h + w))
    z = S.Spectral("torch").rfft2(x)
    out = S.Spectral(backend).irfft2(z, (h, w))
    assert _rel(out, S.Spectral("torch").irfft2(z, (h, w))) < 1e-5
    assert _rel(out, x) < 1e-5


@pytest.mark.parametrize("backend", S.BACKENDS)
@pytest.mark.parametrize("h,w,crop", [(16, 16, 9), (15, 20, 7), (31, 31, 15), (12, 9, 5)])
def test_cropped_irfft2_is_the_centred_window_of_the_whole(h, w, crop, backend):
    """The matmul backends compute only the window's rows and columns; the result must be
    the window of the whole inverse (an index off by one, or the wrong wrap, moves it)."""
    x = torch.randn(2, h, w, generator=torch.Generator().manual_seed(h * w + crop))
    z = S.Spectral("torch").rfft2(x)
    out = S.Spectral(backend).irfft2(z, (h, w), crop)
    assert out.shape == (2, crop, crop)
    assert _rel(out, S.centered_crop_from_circular(x, crop)) < 1e-5


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


def _int8_weights(m: torch.Tensor) -> torch.Tensor:
    """``m`` as a per-column symmetric int8 weight holds it (TFLite's per-channel scheme)."""
    step = m.abs().amax(dim=0, keepdim=True).clamp_min(1e-30) / 127
    return torch.round(m / step) * step


def test_int8_split_factors_survive_int8_weights(monkeypatch):
    """Each factor of the matmul-int8 backend is held by int8 weights to within 1/127 of a
    step, so its DFT under int8 weights is ~100x closer than the plain matmul graph's."""
    a = S.Spectral("matmul")._array("rcos", 168)
    hi, lo = S.int8_split(a)
    assert np.array_equal(hi + lo, a) or np.abs(hi + lo - a).max() < 1e-15
    step = np.abs(a).max(axis=0) / 127
    assert np.all(np.abs(lo) <= step / 2 + 1e-15)
    np.testing.assert_allclose(_int8_weights(torch.from_numpy(hi)).numpy(), hi, atol=1e-12)
    x = torch.randn(3, 168, 168, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    ref = S.Spectral("torch").rfft2(x)
    matmul_last = S.matmul_last
    monkeypatch.setattr(S, "matmul_last", lambda x, m: matmul_last(x, _int8_weights(m)))
    err = {b: max(_rel(o, r) for o, r in zip(S.Spectral(b).rfft2(x), ref)) for b in MATMUL_BACKENDS}
    assert err["matmul"] > 1e-3 and err["matmul-int8"] < err["matmul"] / 50, err


@pytest.mark.parametrize("backend", MATMUL_BACKENDS)
def test_matmul_backend_uses_only_2d_real_matmuls(backend):
    sp = S.Spectral(backend)
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
