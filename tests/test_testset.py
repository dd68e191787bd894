import json

import numpy as np
import pytest

from mobile_kernelnet.degrade import degrade_np
from mobile_kernelnet.gallery import TEST_IMAGES
from mobile_kernelnet.kernels import FAMILIES
from mobile_kernelnet.testset import load_hr, load_testset, make_testset


def test_testset_layout_and_ground_truth(testset_sf4):
    manifest, entries = load_testset(testset_sf4)
    assert manifest["sf"] == 4 and len(entries) == len(TEST_IMAGES) * len(FAMILIES)
    assert {e.family for e in entries} == set(FAMILIES)
    e = entries[0]
    k = e.kernel()
    assert k.shape == (23, 23) and abs(k.sum() - 1) < 1e-5
    # the PNG is the 8-bit quantisation of the degraded HR crop
    expected = np.clip(degrade_np(load_hr(e.image), k, 4), 0, 1)
    assert np.abs(e.lr() - expected).max() <= 0.5 / 255 + 1e-6


def test_testset_is_deterministic(testset_sf4, tmp_path):
    again = make_testset(4, tmp_path)
    a = json.loads((testset_sf4 / "manifest.json").read_text())
    b = json.loads((again / "manifest.json").read_text())
    assert a["entries"] == b["entries"]


def test_existing_set_kept_and_tampering_detected(testset_sf4, tmp_path):
    with pytest.raises(FileExistsError):
        make_testset(4, testset_sf4.parent)
    copy = make_testset(4, tmp_path)
    np.save(copy / "moon_disk.npy", np.ones((23, 23), np.float32) / 23 ** 2)
    with pytest.raises(ValueError, match="changed"):
        load_testset(copy)
    assert not list(tmp_path.glob(".sf4-*")), "temporary build folder left behind"


@pytest.fixture(scope="module")
def camera_sf4(testset_sf4):
    from mobile_kernelnet.testset import split_folder
    folder = split_folder(testset_sf4.parent, 4, "camera")
    return folder if folder.exists() else make_testset(4, testset_sf4.parent, split="camera")


def test_camera_split_shares_kernels_and_records_its_levels(testset_sf4, camera_sf4):
    from mobile_kernelnet.camera import LEVELS
    _, clean = load_testset(testset_sf4)
    manifest, entries = load_testset(camera_sf4)
    assert manifest["split"] == "camera" and len(entries) == len(LEVELS) * len(clean)
    by_stem = {e.stem: e for e in clean}
    raw = {e["stem"]: e for e in manifest["entries"]}
    deviation = {}
    for e in entries:
        assert e.lr_path.read_bytes()[:2] == b"\xff\xd8"  # a JPEG file
        assert raw[e.stem]["camera"]["jpeg_quality"] == LEVELS[e.level].jpeg_quality
        assert raw[e.stem]["camera"]["a"] == LEVELS[e.level].a and raw[e.stem]["camera"]["b"] == LEVELS[e.level].b
        twin = by_stem[f"{e.image}_{e.family}"]
        np.testing.assert_array_equal(e.kernel(), twin.kernel())
        deviation.setdefault(e.level, []).append(np.abs(e.lr() - twin.lr()).mean())
    means = [np.mean(deviation[lv]) for lv in LEVELS]
    assert means[0] > 1 / 255 and means[0] < means[1] < means[2]  # low < medium < high


def test_eval_reports_camera_levels(camera_sf4, capsys):
    from mobile_kernelnet.cli import main
    assert main(["eval", "--testset", str(camera_sf4.parent), "--sf", "4", "--split", "camera",
                 "--models", "fixed-gaussian", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "camera split" in out
    for level in ("low", "medium", "high"):
        assert f"fixed-gaussian         {level:<7} overall" in out
