import numpy as np

from mobile_kernelnet.gallery import refuse_test_image
from mobile_kernelnet.sr import SRConfig
from mobile_kernelnet.sr_tuning import tuning_cases, sweep


def test_tuning_cases_mirror_the_test_set_on_training_images():
    cases = tuning_cases(2)
    assert len(cases) == 15 and len({c["name"] for c in cases}) == 15
    for c in cases:
        refuse_test_image(c["hr"], c["name"])  # never a scikit-image gallery image
        assert c["hr"].shape == tuple(2 * s for s in c["lr"].shape) and c["hr"].shape[0] % 12 == 0
        assert np.allclose(c["lr"] * 255, np.round(c["lr"] * 255), atol=1e-4)  # 8-bit values
        assert abs(c["kernel"].sum() - 1) < 1e-5
    again = tuning_cases(2)
    assert all(np.array_equal(a["lr"], b["lr"]) for a, b in zip(cases, again))


def test_sweep_scores_every_source_and_picks_the_best_score():
    report = sweep([2], ["fixed-gaussian"], grid={"mu": (1e-7, 1e-3), "sigma_end": (0.01,)},
                   base=SRConfig(iterations=2), progress=False, limit=2)
    assert report["sources"] == ["true", "fixed-gaussian"] and len(report["grid"]) == 2
    for p in report["grid"]:
        got = p["psnr"]["2"]["clean"]
        assert np.isclose(p["score"], np.mean([got["true"], got["fixed-gaussian"]]))
    best = max(report["grid"], key=lambda p: p["score"])
    assert report["chosen"] == best["params"] and set(best["params"]) == {"mu", "sigma_end"}
    # the two grid points differ by four decades of regularisation: they must not score alike
    assert abs(report["grid"][0]["score"] - report["grid"][1]["score"]) > 0.1


def test_camera_cases_share_kernels_and_get_noisier_by_level():
    from mobile_kernelnet.camera import LEVELS
    clean = tuning_cases(2)[:3]
    errors = []
    for level in LEVELS:
        cam = tuning_cases(2, level=level)[:3]
        assert all(np.array_equal(a["kernel"], b["kernel"]) for a, b in zip(clean, cam))
        errors.append(np.mean([np.abs(a["lr"] - b["lr"]).mean() for a, b in zip(clean, cam)]))
    assert errors[0] < errors[1] < errors[2]


def test_camera_sweep_covers_every_level():
    report = sweep([2], [], grid={"noise_floor": (0.005,), "noise_end": (1.0,)}, camera=True,
                   base=SRConfig(iterations=2), progress=False, limit=1)
    assert report["splits"] == ["clean", "low", "medium", "high"]
    assert set(report["grid"][0]["psnr"]["2"]) == set(report["splits"])


def test_textures_join_the_packaged_cases_without_changing_them():
    from mobile_kernelnet.sr_tuning import TEXTURE_SIDE, tuning_cases
    plain, more = tuning_cases(2, seed=3), tuning_cases(2, seed=3, textures=2)
    assert len(more) == len(plain) + 2 * 3  # one case per texture and kernel family
    for a, b in zip(plain, more):
        assert a["name"] == b["name"] and np.array_equal(a["lr"], b["lr"]) and np.array_equal(a["kernel"], b["kernel"])
    tex = more[len(plain):]
    assert all(c["name"].startswith("texture") and c["hr"].shape == (TEXTURE_SIDE, TEXTURE_SIDE) for c in tex)
    assert not np.array_equal(tex[0]["hr"], tuning_cases(2, seed=4, textures=1)[len(plain)]["hr"])  # drawn per seed
