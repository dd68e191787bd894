import json

import pytest
import torch

from mobile_kernelnet.train import TrainConfig, Trainer

TINY = dict(sf=2, patch_lr=48, batch=2, pretrain_steps=2, steps=3, pool_size=12, val_size=4,
            val_every=2, ckpt_every=1, log_every=1, bank_size=2, threads=1)


def _params(model):
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def test_training_smoke_logs_validates_and_checkpoints(tmp_path):
    t = Trainer(TrainConfig(**TINY), tmp_path / "run")
    before = _params(t.model).clone()
    val = t.run()
    assert not torch.equal(before, _params(t.model))
    assert 0 < val["val_l1"] <= 2 and set(val) >= {"val_l1_gaussian", "val_l1_motion", "val_l1_disk"}
    lines = [json.loads(x) for x in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert {r["stage"] for r in lines} == {"pretrain", "e2e", "done"}
    assert any("grad_l1" in r for r in lines) and any("kernel_l1" in r for r in lines)
    assert (tmp_path / "run" / "checkpoint.pt").is_file() and (tmp_path / "run" / "best.pt").is_file()
    with pytest.raises(FileExistsError, match="resume"):
        Trainer(TrainConfig(**TINY), tmp_path / "run")


def test_resume_continues_exactly(tmp_path):
    straight = Trainer(TrainConfig(**TINY), tmp_path / "a")
    straight.run()
    # the same run cut after the pretrain stage and one e2e step, then resumed
    cut = Trainer(TrainConfig(**{**TINY, "steps": 1}), tmp_path / "b")
    cut.run()
    resumed = Trainer(TrainConfig(**TINY), tmp_path / "b", resume=True)
    assert resumed.stage == "e2e" and resumed.step == 1
    resumed.run()
    assert torch.allclose(_params(straight.model), _params(resumed.model), atol=1e-6)


def test_canonical_command_round_trips_through_the_cli():
    from mobile_kernelnet.cli import build_parser
    from mobile_kernelnet.train import canonical_command

    cfg = TrainConfig(sf=3, config="mobile", seed=7, steps=123)
    cmd = canonical_command(cfg)
    assert cmd.startswith("mkn train kernelnet --sf 3") and "--seed 7" in cmd and "--batch" not in cmd
    args = build_parser().parse_args(cmd.split()[1:])
    assert (args.sf, args.seed, args.steps, args.ship) == (3, 7, 123, True)
