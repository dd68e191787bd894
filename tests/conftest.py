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


NPU_TARGETS = "qualcomm:SM8350,SM8650"
"""CI's NPU compiles: a fixed-point-only HTP (v68) and a float-capable one (v75)."""


@pytest.fixture(scope="session")
def exported(tmp_path_factory):
    """The shipped mobile sf 2 KernelNet exported to every format, TFLite files compiled for
    :data:`NPU_TARGETS` (once per session)."""
    from export.exporter import export
    from export.formats import FORMATS
    from export.npu import parse_targets
    out = tmp_path_factory.mktemp("export") / "kn_sf2"
    export("kernelnet", "mobile", 2, EXPORT_SIZE, list(FORMATS), out, calibration_n=8,
           npu=parse_targets(NPU_TARGETS), progress=lambda _: None)
    return out


@pytest.fixture(scope="session")
def exported_s2k(tmp_path_factory):
    """The shipped mobile sf 2 S2K as fp32 and int8 TFLite at 96 px, compiled for
    :data:`NPU_TARGETS`. (At 64 px -- one spectrum crop -- onnx2tf 1.28.8 fails on a DFT
    MatMul, see NOTES.md.)"""
    from export.exporter import export
    from export.npu import parse_targets
    out = tmp_path_factory.mktemp("export") / "s2k_sf2"
    export("s2k", "mobile", 2, 96, ["tflite-fp32", "tflite-int8"], out, calibration_n=8,
           npu=parse_targets(NPU_TARGETS), progress=lambda _: None)
    return out


@pytest.fixture(scope="session")
def testset_root_sf2(tmp_path_factory):
    """A folder holding a real sf 2 test set (``ROOT/sf2``)."""
    from mobile_kernelnet.testset import make_testset
    root = tmp_path_factory.mktemp("testsets")
    make_testset(2, root)
    return root
