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
