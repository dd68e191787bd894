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
