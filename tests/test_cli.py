import json
import shutil
import subprocess
import sys
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest

from mobile_kernelnet import estimate
from mobile_kernelnet.cli import main
from mobile_kernelnet.estimation import BadImageError
from mobile_kernelnet.metrics import kernel_l1

ASSETS = Path(__file__).resolve().parent.parent / "assets"


@pytest.fixture
def images(tmp_path):
    """Good images in every supported flavour and one of each bad kind."""
    lr = iio.imread(ASSETS / "sample_lr.png")  # 8-bit gray
    rgb = np.stack([lr, lr // 2, lr], axis=-1)
    good = {
        "gray8.png": lr,
        "gray16.png": lr.astype(np.uint16) * 257,
        "rgba.png": np.dstack([rgb, np.full(lr.shape, 255, np.uint8)]),
        "rgb.jpg": rgb,
        "gray16_tiff.tif": lr.astype(np.uint16) * 257,
    }
    nan = lr.astype(np.float32) / 255
    nan[10, 10] = np.nan
    bad = {"tiny.png": lr[:20, :20], "constant.png": np.full((128, 128), 90, np.uint8), "nan.tif": nan}
    for name, arr in {**good, **bad}.items():
        iio.imwrite(tmp_path / name, arr)
    (tmp_path / "notes.png").write_text("this is not a PNG")
    return tmp_path, sorted(good), sorted(bad) + ["notes.png", "missing.png"]


def test_estimate_reads_every_supported_format(images, capsys):
    folder, good, _ = images
    out = folder / "out"
    assert main(["estimate", *[str(folder / g) for g in good], "--sf", "2", "--model", "fixed-gaussian",
                 "--out", str(out)]) == 0
    kernels = [np.load(out / f"{Path(g).stem}.npy") for g in good]
    assert all(k.shape == (15, 15) and k.dtype == np.float32 and abs(k.sum() - 1) < 1e-5 for k in kernels)
    assert len(capsys.readouterr().out.strip().splitlines()) == len(good)
    assert all((out / f"{Path(g).stem}.png").is_file() for g in good)


def test_bad_inputs_fail_alone_and_leave_nothing(images, capsys):
    folder, good, bad = images
    out = folder / "out"
    code = main(["estimate", *[str(folder / b) for b in bad], str(folder / "gray8.png"),
                 "--sf", "2", "--model", "fixed-gaussian", "--out", str(out)])
    assert code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == len(bad)
    for b, why in [("tiny.png", "too small"), ("constant.png", "constant"), ("nan.tif", "NaN"),
                   ("notes.png", "not a readable image"), ("missing.png", "no such file")]:
        assert any(b in line and why in line for line in err), (b, err)
    assert sorted(p.name for p in out.iterdir()) == ["gray8.npy", "gray8.png"]


def test_library_call_and_truth_l1(capsys, tmp_path):
    k = estimate(str(ASSETS / "sample_lr.png"), sf=2, model="fixed-gaussian")
    truth = np.load(ASSETS / "sample_kernel.npy")
    assert main(["estimate", str(ASSETS / "sample_lr.png"), "--sf", "2", "--model", "fixed-gaussian",
                 "--truth", str(ASSETS / "sample_kernel.npy"), "--out", str(tmp_path), "--show"]) == 0
    out = capsys.readouterr().out
    assert f"L1 vs truth {kernel_l1(k, truth):.4f}" in out
    assert "@" in out  # the drawn kernel's peak
    with pytest.raises(BadImageError):
        estimate(np.zeros((100, 100), np.float32), sf=2, model="fixed-gaussian")


def test_unknown_model_is_a_clean_error(capsys, tmp_path):
    assert main(["estimate", str(ASSETS / "sample_lr.png"), "--sf", "2", "--model", "nope",
                 "--out", str(tmp_path)]) == 2
    assert "unknown model 'nope'" in capsys.readouterr().err


def test_eval_json_matches_direct_scoring(testset_sf4, tmp_path, capsys):
    report = tmp_path / "eval.json"
    root = testset_sf4.parent
    assert main(["eval", "--testset", str(root), "--sf", "4", "--models", "fixed-gaussian",
                 "--json", str(report), "--quiet"]) == 0
    table = capsys.readouterr().out
    data = json.loads(report.read_text())
    assert data["schema"] == "mkn-eval/1"
    res = data["results"][0]
    motion = [r for r in res["per_image"] if r["family"] == "motion"]
    e = motion[0]
    k = estimate(str(testset_sf4 / f"{e['stem']}.png"), sf=4, model="fixed-gaussian")
    assert e["l1"] == pytest.approx(kernel_l1(k, np.load(testset_sf4 / f"{e['stem']}.npy")))
    fam = res["models"]["fixed-gaussian"]["families"]["motion"]
    assert fam["l1"] == pytest.approx(np.mean([r["l1"] for r in motion])) and fam["n"] == 12
    assert f"{fam['l1']:.4f}" in table


def test_eval_missing_testset_is_a_clean_error(tmp_path, capsys):
    assert main(["eval", "--testset", str(tmp_path), "--sf", "2", "--quiet"]) == 2
    assert "make-testset" in capsys.readouterr().err


def test_train_architecture_choices_are_the_models_own():
    """The parser stays torch-free, so it spells the choices out; they must be the model's lists."""
    from mobile_kernelnet.cli import build_parser
    from mobile_kernelnet.models import kernelnet as kn

    train = build_parser()._subparsers._group_actions[0].choices["train"]
    options = {o: a.choices for a in train._actions for o in a.option_strings}
    assert tuple(options["--grad-arch"]) == kn.GRADIENT_ARCHS
    assert tuple(options["--refine-arch"]) == tuple(kn.REFINEMENTS)
    assert tuple(options["--fft1-threshold-mode"]) == kn.THRESHOLD_MODES
    assert tuple(options["--fft1-solver"]) == kn.FFT1_SOLVERS
