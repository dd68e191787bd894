"""One parametrised test over every registered model (as timm does)."""
import numpy as np
import pytest
import torch

from mobile_kernelnet.kernels import kernel_size
from mobile_kernelnet.models import create_model, list_models
from mobile_kernelnet.models.registry import Estimator, StagedEstimator, model_entry


@pytest.mark.parametrize("sf", [2, 3, 4])
@pytest.mark.parametrize("name", list_models())
def test_registered_model_contract(name, sf):
    for config in model_entry(name).configs:
        model = create_model(name, sf, config, pretrained=False)
        x = torch.rand(2, 1, 96, 80)
        with torch.inference_mode():
            k = model(x)
        K = kernel_size(sf)
        assert model.sf == sf and model.kernel_size == K
        assert k.shape == (2, 1, K, K) and k.dtype == torch.float32
        assert torch.all(k >= 0)
        assert torch.allclose(k.sum(dim=(-2, -1)), torch.ones(2, 1), atol=1e-5)
        assert isinstance(model, Estimator)
        if isinstance(model, StagedEstimator):  # the stages it names, in order, kernel last = forward
            with torch.inference_mode():
                stages = model.set_spectral_backend("matmul").stages(x)
            assert tuple(stages) == model.stage_names and model.stage_names[-1] == "kernel"
            assert model.int8_float_reason
            assert torch.allclose(stages["kernel"], k, atol=1e-5)  # the matmul DFT gives the same kernel
            model.set_spectral_backend("torch")


@pytest.mark.parametrize("name", list_models())
def test_every_parameter_gets_a_gradient(name):
    """A loss on the kernel reaches every trainable weight of every config (a stage cut off
    by a detach, an unused layer or an integer path would leave some without one)."""
    for config in model_entry(name).configs:
        model = create_model(name, 2, config, pretrained=False).train()
        params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        if not params:
            continue
        k = model(torch.rand(2, 1, 96, 80, generator=torch.Generator().manual_seed(0)))
        (k * torch.randn(k.shape, generator=torch.Generator().manual_seed(1))).sum().backward()
        missing = [n for n, p in params if p.grad is None or not torch.isfinite(p.grad).all() or not p.grad.any()]
        assert not missing, (name, config, missing)


SHIPPED = [("kernelnet", "mobile"), ("s2k", "mobile")]


@pytest.mark.parametrize("sf", [2, 3, 4])
@pytest.mark.parametrize("name,config", SHIPPED)
def test_shipped_weights_load_with_their_record(name, config, sf):
    """Weights ship for every sf, small, with the log and the command that made them."""
    import json
    from mobile_kernelnet.models.registry import weights_path

    path = weights_path(name, config, sf)
    record = json.loads(path.with_suffix(".json").read_text())
    assert record["command"].startswith(f"mkn train {name} --sf {sf}") and "seed" in record
    assert path.with_suffix(".log").stat().st_size > 0 and path.stat().st_size < 5e6
    model = create_model(name, sf, config)
    assert not model.training
    if name == "kernelnet":  # the architecture the run trained, not just the config's default
        train_cfg = record["train_config"]
        assert model.config.refine_arch == train_cfg["refine_arch"] or train_cfg["refine_arch"] is None
        assert model.config.threshold == train_cfg["fft1_threshold"]


@pytest.mark.parametrize("name,config", SHIPPED)
def test_shipped_estimators_beat_the_fixed_kernel_on_the_sample(name, config):
    from pathlib import Path
    from mobile_kernelnet import estimate
    from mobile_kernelnet.metrics import kernel_l1

    assets = Path(__file__).resolve().parent.parent / "assets"
    truth = np.load(assets / "sample_kernel.npy")
    errors = {m: kernel_l1(estimate(str(assets / "sample_lr.png"), sf=2, model=m, config=c), truth)
              for m, c in [(name, config), ("fixed-gaussian", None)]}
    assert errors[name] < errors["fixed-gaussian"], errors


def test_unknown_model_and_config():
    with pytest.raises(ValueError, match="registered"):
        create_model("no-such-model", 2)
    with pytest.raises(ValueError, match="configs"):
        create_model("fixed-gaussian", 2, "huge")


def test_fixed_gaussian_matches_paper_sigma():
    k = create_model("fixed-gaussian", 4)(torch.zeros(1, 1, 80, 80))[0, 0].numpy().astype(np.float64)
    xs = np.arange(23) - 11
    assert np.sum(k * xs[None, :] ** 2) == pytest.approx(9.0, rel=0.02)  # sigma 3.0 at sf 4


def test_ablations_run_their_parents_weights():
    from mobile_kernelnet.models.registry import Estimator, StagedEstimator, model_entry, weights_path
    assert model_entry("kernelnet-norefine").weights_of == "kernelnet"
    assert weights_path("kernelnet-norefine", "mobile", 2) == weights_path("kernelnet", "mobile", 2)
    assert weights_path("s2k-noadv", "mobile", 2).name == "s2k-noadv_mobile_sf2.pt"  # trained on its own
