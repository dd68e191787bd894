"""Bad or unusual inputs: never overwrite a user's file, read photos as phones write them,
refuse what would give a wrong answer, one line and a documented exit code for each."""
import hashlib
import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
from PIL import Image

from mobile_kernelnet import estimate
from mobile_kernelnet.cli import EXIT_INPUT_FAILED, EXIT_OK, EXIT_USAGE, main
from mobile_kernelnet.color import ValueRangeError
from mobile_kernelnet.imio import load_image

ASSETS = Path(__file__).resolve().parent.parent / "assets"
FIXED = ["--sf", "2", "--model", "fixed-gaussian"]


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def lr8():
    return iio.imread(ASSETS / "sample_lr.png")  # (252, 252) uint8


@pytest.fixture
def photo(tmp_path, lr8):
    path = tmp_path / "photo.png"
    iio.imwrite(path, lr8)
    return path


# -- 1. data loss -------------------------------------------------------------------------
def test_estimate_into_the_inputs_folder_never_replaces_the_input(photo, capsys):
    before = _digest(photo)
    assert main(["estimate", str(photo), *FIXED, "--out", str(photo.parent)]) == EXIT_USAGE
    assert "would overwrite the input" in capsys.readouterr().err
    assert _digest(photo) == before and not (photo.parent / "photo.npy").exists()


def test_repeated_stems_get_distinct_outputs(tmp_path, lr8, capsys):
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    paths = [tmp_path / "a" / "x.png", tmp_path / "b" / "x.png", tmp_path / "a" / "x.jpg"]
    for i, p in enumerate(paths):
        iio.imwrite(p, np.roll(lr8, 7 * i, axis=1))
    out = tmp_path / "o"
    assert main(["estimate", *map(str, paths), "--sf", "2", "--out", str(out)]) == EXIT_OK
    lines = capsys.readouterr().out.splitlines()
    targets = [line.split("-> ")[1].split()[0] for line in lines]
    assert targets == [str(out / f"x-{n}.npy") for n in (1, 2, 3)]
    assert len({_digest(Path(t)) for t in targets}) == 3  # three different kernels kept


# -- 2. value ranges ------------------------------------------------------------------------
def test_integer_arrays_are_scaled_by_their_type(lr8):
    ref = estimate(lr8.astype(np.float32) / 255, sf=2)
    np.testing.assert_allclose(estimate(lr8, sf=2), ref, atol=1e-6)
    np.testing.assert_allclose(estimate(lr8.astype(np.uint16) * 257, sf=2), ref, atol=1e-6)


@pytest.mark.parametrize("array, why", [
    (np.ones((100, 100), bool), "pixel type bool"),
    (np.full((100, 100), 7, np.int32), "pixel type int32"),
    (np.linspace(0, 255, 100 * 100, dtype=np.float32).reshape(100, 100), "divide by 255"),
    (np.full((100, 100), -0.5, np.float32), "outside [0, 1]"),
])
def test_arrays_that_would_give_a_wrong_kernel_are_refused(array, why):
    with pytest.raises(ValueRangeError, match=why.replace("[", r"\[").replace("]", r"\]")):
        estimate(array, sf=2, model="fixed-gaussian")


def test_float_tiff_holding_0_255_is_refused_by_the_cli(tmp_path, lr8, capsys):
    path = tmp_path / "float255.tif"
    iio.imwrite(path, lr8.astype(np.float32))
    assert main(["estimate", str(path), *FIXED, "--out", str(tmp_path / "o")]) == EXIT_INPUT_FAILED
    assert "divide by 255" in capsys.readouterr().err


# -- 3. EXIF orientation --------------------------------------------------------------------
def test_exif_orientation_is_applied(tmp_path, lr8, capsys):
    wide = np.ascontiguousarray(lr8[:, :180])  # 252 x 180 as stored
    path = tmp_path / "phone.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    Image.fromarray(wide).save(path, quality=95, exif=exif)
    shown = load_image(path).pixels
    assert shown.shape == (180, 252)
    plain = np.asarray(Image.open(path), np.float32) / 255
    np.testing.assert_array_equal(shown, np.rot90(plain, -1))
    k = estimate(str(path), sf=2)
    np.testing.assert_allclose(k, estimate(np.rot90(plain, -1).copy(), sf=2), atol=1e-6)
    assert main(["sr", str(path), "--sf", "2", "--kernel", str(ASSETS / "sample_kernel.npy"),
                 "--out", str(tmp_path / "sr.png")]) == EXIT_OK
    assert iio.imread(tmp_path / "sr.png").shape[:2] == (360, 504)  # the displayed frame, x2


# -- 4. sr --out ------------------------------------------------------------------------------
@pytest.fixture
def small(tmp_path, lr8):
    path = tmp_path / "small.png"
    iio.imwrite(path, lr8[:64, :64])
    return path


def test_sr_out_folder_gets_named_files_inside(small, tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    assert main(["sr", str(small), *FIXED, "--out", str(results)]) == EXIT_OK
    assert sorted(p.name for p in results.iterdir()) == ["small_sr.png", "small_sr_kernel.npy",
                                                         "small_sr_kernel.png"]
    assert not list(tmp_path.glob("*.part*")) and not (tmp_path / "results_kernel.npy").exists()
    fresh = tmp_path / "new" / "deeper"
    assert main(["sr", str(small), *FIXED, "--out", f"{fresh}/"]) == EXIT_OK
    assert (fresh / "small_sr.png").is_file()


def test_sr_output_format_follows_the_suffix(small, tmp_path, capsys):
    assert main(["sr", str(small), *FIXED, "--out", str(tmp_path / "x.jpg")]) == EXIT_OK
    assert (tmp_path / "x.jpg").read_bytes()[:2] == b"\xff\xd8"
    assert main(["sr", str(small), *FIXED, "--out", str(tmp_path / "x.tif")]) == EXIT_OK
    assert iio.imread(tmp_path / "x.tif").shape == (128, 128)
    assert main(["sr", str(small), *FIXED, "--out", str(tmp_path / "y.bmp")]) == EXIT_USAGE
    assert "unsupported output suffix '.bmp'" in capsys.readouterr().err
    assert not (tmp_path / "y.bmp").exists() and not (tmp_path / "y_kernel.npy").exists()


def test_sr_keeps_16_bit_input_16_bit(tmp_path, lr8):
    path = tmp_path / "deep.png"
    iio.imwrite(path, lr8[:64, :64].astype(np.uint16) * 257)
    assert main(["sr", str(path), *FIXED, "--out", str(tmp_path / "deep_sr.png")]) == EXIT_OK
    assert iio.imread(tmp_path / "deep_sr.png").dtype == np.uint16


def test_sr_never_writes_over_its_input(small, capsys):
    before = _digest(small)
    assert main(["sr", str(small), *FIXED, "--out", str(small)]) == EXIT_USAGE
    assert "would overwrite the input" in capsys.readouterr().err and _digest(small) == before


# -- 5. no tracebacks ---------------------------------------------------------------------------
@pytest.mark.parametrize("args", [["--runs", "0"], ["--threads", "0"], ["--threads", "1,0"]])
def test_bench_refuses_non_positive_counts(tmp_path, args, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["bench", str(tmp_path), "--json", str(tmp_path / "b.json"), *args])
    assert exit_.value.code == EXIT_USAGE
    assert "must be at least 1" in capsys.readouterr().err


@pytest.mark.parametrize("content, why", [("{}", "no benchmark records"), ("not json", "not a JSON file"),
                                          ('{"records": [{"model": "kernelnet"}]}', "records lack")])
def test_bench_baseline_is_checked_first(tmp_path, content, why, capsys):
    baseline = tmp_path / "base.json"
    baseline.write_text(content)
    assert main(["bench", str(tmp_path), "--json", str(tmp_path / "b.json"),
                 "--baseline", str(baseline)]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert why in err and str(baseline) in err and "Traceback" not in err


VALID_EMPTY_MANIFEST = {"schema": "mkn-export/1", "model": "kernelnet", "config": "mobile", "sf": 3, "input_size": 168,
                        "kernel_size": 15, "stages": ["kernel"], "weights_sha256": "0" * 64, "tools": {},
                        "artifacts": {}}


@pytest.mark.parametrize("change, why", [
    (dict(sf="3"), "sf: expected int"),
    (dict(stages=None), "missing 'stages'"),
    (dict(artifacts={"onnx-dft": {"file": "m.onnx", "sha256": "x", "size_bytes": 1, "runtime": "tensorrt",
                                  "spectral_mode": "dft", "inputs": [], "outputs": []}}), "runtime: 'tensorrt'"),
    (dict(artifacts={"onnx-dft": {"file": "m.onnx", "sha256": "x", "size_bytes": 1, "runtime": "onnxruntime",
                                  "spectral_mode": "dft", "inputs": [{"name": "lr", "shape": [1, 1, 8], "layout": "NCHW"}],
                                  "outputs": []}}), r"inputs\[0\].shape: expected 4 positive ints"),
    (dict(artifacts={"onnx-dft": {"file": "m.onnx", "sha256": "x", "size_bytes": 1, "runtime": "onnxruntime",
                                  "spectral_mode": "dft",
                                  "inputs": [{"name": "lr", "shape": [1, 1, 8, 8], "layout": "NCHW"}],
                                  "outputs": [{"name": "grads", "shape": [1, 1, 8, 8], "layout": "CHWN"}]}}),
     r"outputs\[0\].layout: 'CHWN'"),
])
def test_manifest_is_validated_on_load_naming_the_field(tmp_path, change, why, capsys):
    """A manifest that is JSON but not the schema fails when read, saying which field is wrong."""
    from export.manifest import ManifestError, read_manifest
    data = {k: v for k, v in {**VALID_EMPTY_MANIFEST, **change}.items() if v is not None}
    (tmp_path / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(ManifestError, match=why):
        read_manifest(tmp_path)
    assert main(["placement", str(tmp_path)]) == EXIT_USAGE
    assert str(tmp_path / "manifest.json") in capsys.readouterr().err


def test_broken_manifest_names_its_file(tmp_path, capsys):
    (tmp_path / "manifest.json").write_text('{"schema": \n')
    assert main(["parity", str(tmp_path), "--testset", str(tmp_path)]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert str(tmp_path / "manifest.json") in err and "not valid JSON" in err


def test_text_file_as_kernel_is_a_clean_error(small, tmp_path, capsys):
    text = tmp_path / "kernel.npy"
    text.write_text("0.1 0.2 0.3\n")
    assert main(["sr", str(small), "--sf", "2", "--kernel", str(text), "--out", str(tmp_path / "o.png")]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert "not a NumPy .npy kernel file" in err and "allow_pickle" not in err


@pytest.mark.parametrize("kernel, why", [(np.ones((23, 23)) / 23 ** 2, "the sf 4 size"),
                                         (np.ones((15, 15)), "sums to 225"),
                                         (np.full((15, 15), np.nan), "non-finite")])
def test_bad_truth_kernel_fails_before_anything_is_written(photo, tmp_path, kernel, why, capsys):
    truth = tmp_path / "truth.npy"
    np.save(truth, kernel)
    out = tmp_path / "o"
    assert main(["estimate", str(photo), *FIXED, "--truth", str(truth), "--out", str(out)]) == EXIT_USAGE
    assert why in capsys.readouterr().err and not out.exists()


def test_gray_alpha_png_is_read_as_gray(tmp_path, lr8):
    path = tmp_path / "la.png"
    Image.fromarray(np.dstack([lr8, np.full_like(lr8, 200)]), "LA").save(path)
    np.testing.assert_allclose(load_image(path).pixels, lr8 / 255, atol=1e-6)
    assert main(["estimate", str(path), *FIXED, "--out", str(tmp_path / "o")]) == EXIT_OK


def test_cmyk_and_palette_images(tmp_path, lr8, capsys):
    Image.fromarray(lr8).convert("CMYK").save(tmp_path / "cmyk.jpg")
    Image.fromarray(lr8).convert("P").save(tmp_path / "palette.png")
    assert load_image(tmp_path / "palette.png").pixels.shape == (252, 252, 3)
    code = main(["estimate", str(tmp_path / "cmyk.jpg"), *FIXED, "--out", str(tmp_path / "o")])
    assert code == EXIT_INPUT_FAILED and "CMYK images are not supported" in capsys.readouterr().err


def test_a_directory_is_not_an_image(tmp_path, capsys):
    (tmp_path / "folder.png").mkdir()
    assert main(["estimate", str(tmp_path / "folder.png"), *FIXED, "--out", str(tmp_path / "o")]) == EXIT_INPUT_FAILED
    assert "is a directory" in capsys.readouterr().err


def test_failing_adb_reports_command_and_exit_code(monkeypatch, capsys):
    monkeypatch.setenv("ADB", "/bin/false")
    assert main(["android", "devices"]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert "/bin/false devices -l" in err and "exit 1" in err and "no output" in err


def test_hung_adb_is_killed_with_its_children(tmp_path):
    from android_harness.adb import Adb, AdbTimeout
    pidfile = tmp_path / "child.pid"
    script = tmp_path / "adb"
    script.write_text(f"#!/bin/sh\nsleep 300 &\necho $! > {pidfile}\nwait\n")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    start = time.monotonic()
    with pytest.raises(AdbTimeout, match="killed"):
        Adb(str(script), timeout_s=1).devices()
    assert time.monotonic() - start < 10
    child = int(pidfile.read_text())
    time.sleep(0.2)
    assert not Path(f"/proc/{child}").exists() or "Z" in Path(f"/proc/{child}/stat").read_text().split()[2]
    with pytest.raises(ValueError, match="positive"):
        Adb(str(script), timeout_s=0)


# -- 6. conventions -----------------------------------------------------------------------------
def test_list_options_take_commas_and_spaces():
    from mobile_kernelnet.cli import build_parser
    parse = build_parser().parse_args
    assert parse(["export", "--sf", "2", "--out", "x", "--to", "onnx-dft,tflite-fp32"]).to == \
        parse(["export", "--sf", "2", "--out", "x", "--to", "onnx-dft", "tflite-fp32"]).to == ["onnx-dft", "tflite-fp32"]
    assert parse(["eval", "--testset", "t", "--sf", "2,4", "--models", "a,b", "c"]).sf == [2, 4]
    assert parse(["eval", "--testset", "t", "--models", "a,b", "c"]).models == ["a", "b", "c"]
    assert parse(["bench", "d", "--json", "j", "--threads", "1", "2", "--sizes", "128,256"]).threads == [1, 2]
    assert parse(["android", "bench", "d", "--benchmark-binary", "b", "--json", "j",
                  "--delegates", "cpu,gpu", "xnnpack"]).delegates == ["cpu", "gpu", "xnnpack"]
    with pytest.raises(SystemExit):
        parse(["export", "--sf", "2", "--out", "x", "--to", "onnx-dft,nope"])


def test_a_bad_image_exits_1_in_estimate_and_sr(tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_text("not an image")
    assert main(["estimate", str(bad), *FIXED, "--out", str(tmp_path / "o")]) == EXIT_INPUT_FAILED
    assert main(["sr", str(bad), *FIXED, "--out", str(tmp_path / "o.png")]) == EXIT_INPUT_FAILED


def test_parity_and_bench_name_the_command_that_builds_the_testset(tmp_path, capsys):
    export = tmp_path / "export"
    export.mkdir()
    (export / "manifest.json").write_text(json.dumps(VALID_EMPTY_MANIFEST))
    for cmd in (["parity", str(export)], ["bench", str(export), "--json", str(tmp_path / "b.json")]):
        assert main([*cmd, "--testset", str(tmp_path / "nowhere")]) == EXIT_USAGE
        err = capsys.readouterr().err
        assert f"mkn make-testset --sf 3 --out {tmp_path / 'nowhere'}" in err, err
    assert not (tmp_path / "b.json").exists()


def test_estimate_out_that_is_a_file_is_refused(photo, tmp_path, capsys):
    taken = tmp_path / "taken"
    taken.write_text("keep me")
    assert main(["estimate", str(photo), *FIXED, "--out", str(taken)]) == EXIT_USAGE
    assert "is an existing file" in capsys.readouterr().err and taken.read_text() == "keep me"
