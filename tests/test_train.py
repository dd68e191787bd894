import hashlib
import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from mobile_kernelnet.train import RECIPES, TrainConfig, Trainer, canonical_command

TINY = dict(sf=2, patch_lr=48, batch=2, pretrain_steps=2, steps=3, pool_size=12, val_size=4,
            val_every=2, ckpt_every=1, log_every=1, bank_size=2, threads=1)


def _params(model):
    return torch.cat([p.detach().flatten() for p in model.parameters()])


@pytest.mark.parametrize("model", ["kernelnet", "s2k"])
def test_training_smoke_logs_validates_and_checkpoints(tmp_path, model):
    t = Trainer(TrainConfig(model=model, **TINY), tmp_path / "run")
    before = _params(t.model).clone()
    val = t.run()
    assert not torch.equal(before, _params(t.model))
    assert 0 < val["val_l1"] <= 2 and set(val) >= {"val_l1_gaussian", "val_l1_motion", "val_l1_disk"}
    lines = [json.loads(x) for x in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert {r["stage"] for r in lines} == set(t.recipe.stages) | {"setup", "shipped-baseline", "done"}
    assert lines[0]["stage"] == "setup" and lines[0]["natural_sources"] and lines[0]["pool_families"]
    # the shipped weights, scored on this run's own validation set: the bar for --ship
    from mobile_kernelnet.models import create_model
    shipped = lines[1]["validation"]
    assert shipped["weights"] == f"{model}_mobile_sf2.pt"
    assert shipped["val_l1"] == pytest.approx(t.validate(create_model(model, 2, "mobile"))["val_l1"])
    assert shipped["val_l1"] < 0.9 * val["val_l1"]  # trained weights beat a 3-step run
    assert any("kernel_l1" in r for r in lines)
    if model == "kernelnet":
        assert any("grad_l1" in r for r in lines) and "val_coarse_l1" in val
    else:
        assert any("adv" in r and "d_loss" in r for r in lines)  # the discriminator is trained
    assert (tmp_path / "run" / "checkpoint.pt").is_file() and (tmp_path / "run" / "best.pt").is_file()
    with pytest.raises(FileExistsError, match="resume"):
        Trainer(TrainConfig(model=model, **TINY), tmp_path / "run")


REFINE = dict(refine_steps=3, refine_cache=6, refine_batch=4)


@pytest.mark.slow
@pytest.mark.parametrize("model, extra, last_steps", [("kernelnet", {}, "steps"), ("s2k", {}, "steps"),
                                                      ("kernelnet", REFINE, "refine_steps")])
def test_resume_continues_exactly(tmp_path, model, extra, last_steps):
    full = {**TINY, **extra}
    straight = Trainer(TrainConfig(model=model, **full), tmp_path / "a")
    straight.run()
    # the same run cut one step into its last stage, then resumed
    cut = Trainer(TrainConfig(model=model, **{**full, last_steps: 1}), tmp_path / "b")
    cut.run()
    resumed = Trainer(TrainConfig(model=model, **full), tmp_path / "b", resume=True)
    assert resumed.stage == resumed.recipe.stages[-1] and resumed.step == 1
    resumed.run()
    for name, net in straight.recipe.nets.items():
        assert torch.allclose(_params(net), _params(resumed.recipe.nets[name]), atol=1e-6), name


def test_s2k_without_discriminator_is_the_ablation(tmp_path):
    t = Trainer(TrainConfig(model="s2k", adv_weight=0.0, **TINY), tmp_path / "run")
    assert set(t.recipe.nets) == {"model"} and t.cfg.shipped_name == "s2k-noadv"
    t.run()
    lines = [json.loads(x) for x in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    steps = [r for r in lines if r["stage"] == "gan" and "kernel_l1" in r]
    assert steps and not any("adv" in r or "d_loss" in r for r in steps)


def test_camera_run_validates_on_both_sets(tmp_path):
    t = Trainer(TrainConfig(model="s2k", camera=True, **TINY), tmp_path / "run")
    lr_cam, lr_clean = t.val[0], t.val_clean[0]
    assert torch.equal(t.val[2], t.val_clean[2])  # same kernels and HR patches
    assert (lr_cam - lr_clean).abs().max() > 2 / 255  # other degradation
    val = t.validate()
    assert {"val_l1", "val_clean_l1"} <= set(val) and val["val_l1"] != val["val_clean_l1"]


def test_canonical_command_round_trips_through_the_cli():
    from mobile_kernelnet.cli import build_parser

    cfg = TrainConfig(model="s2k", sf=3, config="mobile", seed=7, steps=123, adv_weight=0.0, texture_prob=0.2,
                      camera=True)
    cmd = canonical_command(cfg)
    assert cmd.startswith("mkn train s2k --sf 3") and "--seed 7" in cmd and "--batch" not in cmd
    assert "--camera" in cmd.split() and "True" not in cmd
    args = build_parser().parse_args(cmd.split()[1:])
    assert (args.model, args.sf, args.seed, args.steps, args.adv_weight, args.texture_prob, args.camera,
            args.ship) == ("s2k", 3, 7, 123, 0.0, 0.2, True, True)


@pytest.mark.parametrize("weight", [0.0, 1.0])
def test_live_head_hinge_revives_a_collapsed_s2k_head(weight):
    """A kernel map far below softplus' dead zone gives an all-zero kernel and zero gradients;
    only the hinge (``live_head_weight``) moves it back."""
    from mobile_kernelnet.data import HRPatchSampler, training_batch
    from mobile_kernelnet.kernels import KernelPool
    from mobile_kernelnet.train import S2KRecipe

    torch.manual_seed(0)
    recipe = S2KRecipe(TrainConfig(model="s2k", sf=2, adv_weight=0.0, live_head_weight=weight))
    with torch.no_grad():
        recipe.model.generator.out.bias.fill_(-50.0)
    rng = np.random.default_rng(0)
    batch = training_batch(HRPatchSampler(96, rng, bank_size=1), KernelPool.generate(2, 4, rng), 2)
    before = recipe.model.stages(batch[0])
    assert before["kernel"].abs().max() == 0  # collapsed: the kernel is all zero
    opts = recipe.optimizers("gan")
    for _ in range(3):
        recipe.train_step("gan", opts, *batch)
    after = recipe.model.stages(batch[0])["kernel_map"]
    moved = (after.mean() - before["kernel_map"].mean()).item()
    assert (moved > 1e-3) if weight else (moved == 0)


def test_fft1_threshold_reaches_the_model_and_the_command():
    from mobile_kernelnet.cli import build_parser
    from mobile_kernelnet.train import KernelNetRecipe, canonical_command

    cfg = TrainConfig(model="kernelnet", sf=3, fft1_threshold=0.2)
    assert KernelNetRecipe(cfg).model.fft1.threshold == 0.2
    assert KernelNetRecipe(TrainConfig(model="kernelnet", sf=2)).model.fft1.threshold == 0.05
    args = build_parser().parse_args(canonical_command(cfg).split()[1:])
    assert args.fft1_threshold == 0.2


def test_fft1_lambda_init_sets_the_chosen_solvers_start_and_reaches_the_command():
    from mobile_kernelnet.cli import build_parser
    from mobile_kernelnet.train import KernelNetRecipe, canonical_command

    for solver in ("eq11", "normal-equations"):
        cfg = TrainConfig(model="kernelnet", sf=4, fft1_solver=solver, fft1_lambda_init=3e-3)
        model = KernelNetRecipe(cfg).model
        assert float(model.fft1.log_lambda.exp()) == pytest.approx(3e-3, rel=1e-6)
        assert getattr(model.config, model.config.lambda_init_field) == 3e-3
        assert build_parser().parse_args(canonical_command(cfg).split()[1:]).fft1_lambda_init == 3e-3
    default = KernelNetRecipe(TrainConfig(model="kernelnet", sf=4, fft1_solver="normal-equations")).model
    assert float(default.fft1.log_lambda.exp()) == pytest.approx(default.config.ne_lambda_init, rel=1e-6)


def test_bad_texture_share_is_refused_before_a_run_folder_is_made(tmp_path):
    with pytest.raises(ValueError, match=r"\[0, 0.5\]"):
        Trainer(TrainConfig(model="s2k", texture_prob=0.7), tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_family_weights_shape_the_training_pool_not_validation_and_reach_the_command(tmp_path):
    from mobile_kernelnet.cli import build_parser

    cfg = TrainConfig(model="s2k", **{**TINY, "pool_size": 600}, family_weights="gaussian=4,motion=1,disk=1")
    trainer = Trainer(cfg, tmp_path / "run")
    share = float(np.mean(trainer.pool.families == "gaussian"))
    assert 0.6 < share < 0.74  # 4 / 6 of the training kernels
    equal = Trainer(TrainConfig(model="s2k", **{**TINY, "val_size": 60}), tmp_path / "equal")
    weighted = Trainer(TrainConfig(model="s2k", **{**TINY, "val_size": 60}, family_weights="gaussian=4,motion=1,disk=1"),
                       tmp_path / "weighted")
    assert list(weighted.val[3]) == list(equal.val[3])  # validation keeps equal families, the same pairs
    args = build_parser().parse_args(canonical_command(cfg).split()[1:])
    assert args.family_weights == "gaussian=4,motion=1,disk=1"


@pytest.mark.parametrize("weights", ["gaussian=2,motion=1", "gaussian=2,motion=1,disk=0", "gaussian=x,motion=1,disk=1",
                                     "gaussian=2,motion=1,disk=1,box=1"])
def test_bad_family_weights_are_refused_before_a_run_folder_is_made(tmp_path, weights):
    with pytest.raises(ValueError, match="--family-weights"):
        Trainer(TrainConfig(model="s2k", family_weights=weights), tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_refine_stage_fits_only_the_refinement_on_cached_fft2_outputs(tmp_path):
    t = Trainer(TrainConfig(model="kernelnet", refine_arch="wide", **TINY, **REFINE), tmp_path / "run")
    assert t.recipe.stages == ("pretrain", "e2e", "refine")
    seen = {}
    t.recipe.begin_stage = lambda stage, step, draw, out, begin=t.recipe.begin_stage: (
        seen.setdefault(stage, _params(t.model).clone()), begin(stage, step, draw, out))
    t.run()
    front = [p.numel() for p in t.model.gradient.parameters()] + [1]  # + FFT-1's lambda
    n_front = sum(front)
    changed = seen["refine"] != _params(t.model)
    assert not changed[:n_front].any() and changed[n_front:].any()  # front end frozen, refinement moved
    cache = torch.load(tmp_path / "run" / "refine_cache.pt", weights_only=True)
    assert cache["k_coarse"].shape == (6, 1, 15, 15) and cache["k_gt"].shape == (6, 15, 15)
    assert torch.allclose(cache["k_coarse"].sum(dim=(-2, -1)), torch.ones(6, 1), atol=1e-5)
    lines = [json.loads(x) for x in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert any(r["stage"] == "refine" and "val_l1" in r for r in lines)
    best = torch.load(tmp_path / "run" / "best.pt", weights_only=True)
    assert any(k.startswith("refine.convs.") for k in best["model"])  # the wide refinement was saved


def test_shipped_weights_rebuild_the_architecture_they_were_trained_with(tmp_path, monkeypatch):
    """The residual and the plain wide refinement have the same state-dict keys, so the
    file has to carry the architecture: loading must not fall back to the config's."""
    from mobile_kernelnet.models import create_model, registry
    from mobile_kernelnet.models.kernelnet import ResidualWideRefinement

    monkeypatch.setattr(registry, "WEIGHTS_DIR", tmp_path / "weights")
    t = Trainer(TrainConfig(model="kernelnet", refine_arch="wide-residual", fft1_threshold=0.1, **TINY),
                tmp_path / "run")
    t.run()
    assert "start_weights" not in json.loads(t.ship().with_suffix(".json").read_text())  # trained from scratch
    loaded = create_model("kernelnet", 2, "mobile")
    assert isinstance(loaded.refine, ResidualWideRefinement) and loaded.config.threshold == 0.1
    best = torch.load(tmp_path / "run" / "best.pt", weights_only=True)
    t.model.load_state_dict(best["model"])
    x = torch.rand(1, 1, 64, 64)
    with torch.inference_mode():
        assert torch.allclose(loaded(x), t.model.eval()(x), atol=1e-6)
        ablation = create_model("kernelnet-norefine", 2, "mobile")
        assert torch.allclose(ablation(x), t.model.stages(x)["k_coarse"], atol=1e-6)
    path = registry.weights_path("kernelnet", "mobile", 2)
    for write in (lambda: torch.save(best["model"], path),  # a bare state dict
                  lambda: path.write_bytes(b"not a checkpoint")):
        write()
        with pytest.raises(ValueError, match="not a weights file"):
            create_model("kernelnet", 2, "mobile")


@pytest.mark.slow
def test_refine_stage_will_not_resume_without_its_cache(tmp_path):
    cut = Trainer(TrainConfig(model="kernelnet", **TINY, **{**REFINE, "refine_steps": 1}), tmp_path / "run")
    cut.run()
    (tmp_path / "run" / "refine_cache.pt").unlink()
    resumed = Trainer(TrainConfig(model="kernelnet", **TINY, **REFINE), tmp_path / "run", resume=True)
    with pytest.raises(FileNotFoundError, match="refine_cache.pt"):
        resumed.run()


@pytest.mark.slow
def test_a_finished_run_resumes_to_ship_without_its_refine_cache(tmp_path):
    """The cache is a training intermediate: a run whose every stage is done validates
    (and could ship) from its checkpoint alone."""
    cfg = TrainConfig(model="kernelnet", **TINY, **REFINE)
    done = Trainer(cfg, tmp_path / "run")
    last = done.run()
    (tmp_path / "run" / "refine_cache.pt").unlink()
    again = Trainer(cfg, tmp_path / "run", resume=True).run()
    assert again["val_l1"] == pytest.approx(last["val_l1"], rel=1e-5)


def test_refine_options_reach_the_command_and_are_kernelnet_only():
    from mobile_kernelnet.cli import build_parser
    from mobile_kernelnet.train import canonical_command

    cfg = TrainConfig(model="kernelnet", sf=2, refine_arch="wide", refine_steps=500, grad_channels=16,
                      fft1_threshold_mode="soft", fft1_solver="normal-equations")
    args = build_parser().parse_args(canonical_command(cfg).split()[1:])
    assert ((args.refine_arch, args.refine_steps, args.grad_channels, args.fft1_threshold_mode, args.fft1_solver)
            == ("wide", 500, 16, "soft", "normal-equations"))
    model = RECIPES["kernelnet"](cfg).model
    assert model.config.grad_channels == 16 and model.fft1.threshold_mode == "soft"
    assert model.fft1.solver == "normal-equations"
    with pytest.raises(ValueError, match="KernelNet"):
        TrainConfig(model="s2k", refine_steps=10)


@pytest.mark.slow
def test_ship_check_refuses_a_run_that_is_worse_than_the_shipped_weights(tmp_path, capsys):
    """A 3-step camera run loses to the shipped S2K on every set: the camera rule says so,
    with both sides scored on the same images, and the report lands in the run folder."""
    from mobile_kernelnet.cli import main
    from mobile_kernelnet.models import create_model
    from mobile_kernelnet.budget import budget_for
    from mobile_kernelnet.ship_check import natural_errors, natural_scores

    Trainer(TrainConfig(model="s2k", camera=True, **TINY), tmp_path / "run").run()
    assert main(["ship-check", str(tmp_path / "run")]) == 1
    report = json.loads((tmp_path / "run" / "ship_check.json").read_text())
    assert not report["ship"] and not report["criteria"]["natural_camera"]["pass"]
    errors, families, _ = natural_errors({"shipped": create_model("s2k", 2, "mobile")}, 2, budget_for(2, None, "s2k"))
    shipped = errors["shipped"]
    assert report["natural"]["shipped"] == natural_scores(shipped) and report["natural"]["cases"] == 180
    by_family = report["natural_by_family"]["shipped"]["high"]
    assert set(by_family) == {"gaussian", "motion", "disk"} and list(families).count("motion") == 60
    assert np.mean(list(by_family.values())) == pytest.approx(report["natural"]["shipped"]["high"])
    assert report["natural_by_family"]["fixed-gaussian"]["high"] == report["natural_by_family"]["fixed-gaussian"]["clean"]
    lo, hi = report["criteria"]["natural_clean"]["difference_95ci"]
    assert lo <= report["natural"]["run"]["clean"] - report["natural"]["shipped"]["clean"] <= hi
    assert "do not ship" in capsys.readouterr().out
    # the cheaper-model rule asks only "no worse than shipped + allowance": an allowance
    # above any possible L1 difference passes the same run
    assert main(["ship-check", str(tmp_path / "run"), "--within", "5"]) == 0
    cheaper = json.loads((tmp_path / "run" / "ship_check.json").read_text())
    assert cheaper["ship"] and cheaper["rule"] == "cheaper, within +5.0"
    assert cheaper["natural"] == report["natural"]
    # ... on each source of the natural set alone too (90 photo and 90 texture cases)
    for split in ("clean", "camera"):
        halves = [cheaper["criteria"][f"natural_{split}_{source}"] for source in ("photos", "textures")]
        assert all(h["pass"] for h in halves) and f"natural_{split}_photos" not in report["criteria"]
        assert np.mean([h["run"] for h in halves]) == pytest.approx(report["natural"]["run"][split])
        assert halves[0]["run"] != pytest.approx(halves[1]["run"])
    Trainer(TrainConfig(model="s2k", **TINY), tmp_path / "lab").run()
    assert main(["ship-check", str(tmp_path / "lab")]) == 2  # a usage error: nothing was judged
    assert "not a camera run" in capsys.readouterr().err


def test_finetune_starts_from_the_shipped_weights_and_ships_saying_so(tmp_path, monkeypatch):
    from mobile_kernelnet.models import registry

    t = Trainer(TrainConfig(model="s2k", finetune=True, level_input=True, **TINY), tmp_path / "run")
    lines = [json.loads(x) for x in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    start = lines[0]["start_weights"]
    assert start["weights"] == "s2k_mobile_sf2.pt" and len(start["sha256"]) == 64 and start["widened"] == []
    assert start["sha256"] == hashlib.sha256(registry.weights_path("s2k", "mobile", 2).read_bytes()).hexdigest()
    assert t.validate()["val_l1"] == pytest.approx(lines[1]["validation"]["val_l1"])  # = the shipped weights
    monkeypatch.setattr(registry, "WEIGHTS_DIR", tmp_path / "weights")
    t.run()
    record = json.loads(t.ship().with_suffix(".json").read_text())
    assert record["start_weights"] == start and "--finetune" in record["command"].split()


def test_a_finetune_may_add_s2k_level_planes_which_start_at_zero_weight(tmp_path):
    # the shipped s2k-noadv has no level planes
    t = Trainer(TrainConfig(model="s2k", adv_weight=0, finetune=True, level_input=True, **TINY), tmp_path / "run")
    lines = [json.loads(x) for x in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert lines[0]["start_weights"]["weights"] == "s2k-noadv_mobile_sf2.pt"
    assert lines[0]["start_weights"]["widened"] == ["generator.inp.weight"]
    assert t.model.generator.inp.weight.shape[1] == 3
    assert t.model.generator.inp.weight[:, 1:].abs().max() == 0
    assert t.validate()["val_l1"] == pytest.approx(lines[1]["validation"]["val_l1"], abs=1e-6)  # = the shipped weights


def test_a_finetune_may_change_kernelnets_fft1_stage_whose_parameters_start_afresh(tmp_path):
    from mobile_kernelnet.models import create_model

    options = dict(refine_arch="wide-residual", grad_arch="separable")  # the shipped sf 2's
    t = Trainer(TrainConfig(model="kernelnet", finetune=True, fft1_solver="normal-equations",
                            fft1_threshold_mode="soft", **options, **TINY), tmp_path / "run")
    start = json.loads((tmp_path / "run" / "log.jsonl").read_text().splitlines()[0])["start_weights"]
    assert start["restaged"] == ["fft1.log_lambda"] and start["widened"] == []
    shipped, ours = create_model("kernelnet", 2, "mobile").state_dict(), t.model.state_dict()
    assert all(torch.equal(ours[k], v) for k, v in shipped.items() if k != "fft1.log_lambda")
    assert ours["fft1.log_lambda"].exp().item() == pytest.approx(t.model.config.ne_lambda_init)
    assert shipped["fft1.log_lambda"].exp().item() != pytest.approx(t.model.config.ne_lambda_init)


def test_a_finetune_may_replace_kernelnets_gradient_estimator_which_starts_afresh(tmp_path):
    from mobile_kernelnet.models import create_model

    t = Trainer(TrainConfig(model="kernelnet", finetune=True, refine_arch="wide-residual", grad_arch="factored",
                            **TINY), tmp_path / "run")
    start = json.loads((tmp_path / "run" / "log.jsonl").read_text().splitlines()[0])["start_weights"]
    ours = t.model.state_dict()
    assert start["restaged"] == [k for k in ours if k.startswith("gradient.")] and start["restaged"]
    shipped = create_model("kernelnet", 2, "mobile").state_dict()
    assert all(torch.equal(ours[k], v) for k, v in shipped.items() if not k.startswith("gradient."))
    assert ours["gradient.convs.0.0.weight"].shape == (24, 2, 3, 3)  # the factored entry, at its init


def test_a_finetune_refuses_options_the_shipped_weights_were_not_built_with(tmp_path):
    with pytest.raises(ValueError, match=r"built with refine_arch 'wide-residual' \(this run 'wide'\); pass the "
                                         r"same options \(a fine-tune may change threshold_mode, change fft1_solver, "
                                         r"change grad_arch, change grad_channels\)$"):
        Trainer(TrainConfig(model="kernelnet", finetune=True, grad_arch="separable", refine_arch="wide", **TINY),
                tmp_path / "run")


def test_start_from_a_run_loads_its_best_weights_built_as_its_log_says(tmp_path):
    first = Trainer(TrainConfig(model="kernelnet", grad_arch="factored", **TINY), tmp_path / "first")
    first.run()
    best = torch.load(tmp_path / "first" / "best.pt", weights_only=True)["model"]
    # the run's own architecture comes from its log: a fine-tune with the same options loads every tensor
    t = Trainer(TrainConfig(model="kernelnet", grad_arch="factored", start_from=str(tmp_path / "first"), **TINY),
                tmp_path / "second")
    assert all(torch.equal(t.model.state_dict()[k], v) for k, v in best.items())
    start = json.loads((tmp_path / "second" / "log.jsonl").read_text().splitlines()[0])["start_weights"]
    assert start["weights"] == str(tmp_path / "first" / "best.pt") and start["restaged"] == []
    assert start["sha256"] == hashlib.sha256((tmp_path / "first" / "best.pt").read_bytes()).hexdigest()
    assert "--start-from" in canonical_command(t.cfg).split()
    # another gradient CNN restarts that stage only; another sf or a missing run is refused
    other = Trainer(TrainConfig(model="kernelnet", grad_arch="separable", start_from=str(tmp_path / "first"), **TINY),
                    tmp_path / "third")
    assert all(torch.equal(other.model.state_dict()[k], v) for k, v in best.items() if not k.startswith("gradient."))
    with pytest.raises(ValueError, match="sf 2 run, not kernelnet sf 3"):
        Trainer(TrainConfig(model="kernelnet", start_from=str(tmp_path / "first"), **{**TINY, "sf": 3}), tmp_path / "x")
    with pytest.raises(FileNotFoundError, match="no best.pt"):
        Trainer(TrainConfig(model="kernelnet", start_from=str(tmp_path / "none"), **TINY), tmp_path / "y")
    with pytest.raises(ValueError, match="pass one of them"):
        TrainConfig(model="kernelnet", start_from=str(tmp_path / "first"), finetune=True, **TINY)


def test_distill_pretrains_a_new_gradient_cnn_towards_the_start_weights_one(tmp_path):
    from mobile_kernelnet.models import create_model
    from mobile_kernelnet.models.kernelnet import image_gradients

    cfg = TrainConfig(model="kernelnet", finetune=True, distill=True, refine_arch="wide-residual",
                      grad_arch="factored", **{**TINY, "pretrain_steps": 60, "steps": 0, "lr": 1e-2})
    t = Trainer(cfg, tmp_path / "run")
    teacher = create_model("kernelnet", 2, "mobile").gradient  # the shipped (separable) gradient CNN
    assert all(torch.equal(a, b) for a, b in zip(t.recipe.teacher.parameters(), teacher.parameters()))
    t.recipe.teacher = lambda grads: torch.full_like(grads, 0.3)  # a teacher no HR gradient resembles
    t.run()
    with torch.no_grad():
        pred = t.model.gradient(image_gradients(t._draw()[0]))
    assert (pred - 0.3).abs().mean() < 0.05
    assert "--distill" in canonical_command(cfg).split()
    # a distilled run is a start like any other (its log's fine-tune options do not build a model)
    Trainer(replace(cfg, steps=1), tmp_path / "short").run()
    Trainer(TrainConfig(model="kernelnet", start_from=str(tmp_path / "short"), refine_arch="wide-residual",
                        grad_arch="factored", **TINY), tmp_path / "next")
    with pytest.raises(ValueError, match="--distill is a KernelNet fine-tune's option"):
        TrainConfig(model="kernelnet", distill=True, **TINY)
