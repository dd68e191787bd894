import numpy as np
import pytest


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture(scope="session")
def testset_sf4(tmp_path_factory):
    """A real sf 4 test set, built once per session."""
    from mobile_kernelnet.testset import make_testset
    return make_testset(4, tmp_path_factory.mktemp("testsets"))


EXPORT_SIZE = 64
"""Input side of the CI export: small, the check is about the export path, not the image size."""


@pytest.fixture(scope="session")
def exported(tmp_path_factory):
    """The shipped mobile sf 2 KernelNet exported to every format (once per session)."""
    from export.exporter import FORMATS, export
    out = tmp_path_factory.mktemp("export") / "kn_sf2"
    export("kernelnet", "mobile", 2, EXPORT_SIZE, list(FORMATS), out, calibration_n=8, progress=lambda _: None)
    return out


@pytest.fixture(scope="session")
def testset_root_sf2(tmp_path_factory):
    """A folder holding a real sf 2 test set (``ROOT/sf2``)."""
    from mobile_kernelnet.testset import make_testset
    root = tmp_path_factory.mktemp("testsets")
    make_testset(2, root)
    return root
