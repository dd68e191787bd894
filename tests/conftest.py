import numpy as np
import pytest

SLOW_FIXTURES = {"exported", "exported_s2k", "exported_integer", "local_ray"}
"""Tests that use these (an export with every converter, GPU and NPU check, or a Ray
cluster) are marked ``slow`` for the quick loop ``pytest -m "not slow"``; `make test` and
CI run everything."""


def pytest_collection_modifyitems(items):
    for item in items:
        if SLOW_FIXTURES & set(item.fixturenames):
            item.add_marker(pytest.mark.slow)


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


def _export(tmp_path_factory, name: str, model: str, size: int, formats: list[str], sf: int = 2,
            calibration_n: int = 8):
    from export.exporter import export
    from export.npu import parse_targets
    out = tmp_path_factory.mktemp("export") / name
    export(model, "mobile", sf, size, formats, out, calibration_n=calibration_n, npu=parse_targets(NPU_TARGETS),
           progress=lambda _: None)
    return out


@pytest.fixture(scope="session")
def exported(tmp_path_factory):
    """The shipped mobile sf 2 KernelNet exported to every format it can have (``all``), TFLite
    files compiled for :data:`NPU_TARGETS` (once per session)."""
    return _export(tmp_path_factory, "kn_sf2", "kernelnet", EXPORT_SIZE, ["all"])


@pytest.fixture(scope="session")
def exported_integer(tmp_path_factory):
    """The shipped mobile sf 4 KernelNet (integer-ready: FFT-1's normal equations and soft
    threshold) exported to ``tflite-int16x8`` at 80 px (sf 4's smallest is 69: three kernel
    widths) and compiled for :data:`NPU_TARGETS`, calibrated on 16 images: with 8, one of the
    test's four training-source scenes left the calibrated ranges of FFT-1's output and FFT-2's
    powers amplified it (kernel gap 0.64; 0.017 with 16, NOTES.md)."""
    return _export(tmp_path_factory, "kn_sf4_integer", "kernelnet", 80, ["tflite-int16x8"], sf=4, calibration_n=16)


@pytest.fixture(scope="session")
def exported_s2k(tmp_path_factory):
    """The shipped mobile sf 2 S2K as fp32 and int8 TFLite at 96 px, compiled for
    :data:`NPU_TARGETS`. (At 64 px -- one spectrum crop -- onnx2tf 1.28.8 fails on a DFT
    MatMul, see NOTES.md.)"""
    return _export(tmp_path_factory, "s2k_sf2", "s2k", 96, ["tflite-fp32", "tflite-int8"])


def export_subset(src, dest, formats: list[str]):
    """A copy of the export ``src`` holding only ``formats`` (files and a manifest listing
    them): a real export directory for tests that need fewer targets, without exporting again."""
    import shutil
    from dataclasses import replace
    from export.manifest import listed_files, read_manifest, write_manifest
    manifest = read_manifest(src)
    subset = replace(manifest, artifacts={f: manifest.artifacts[f] for f in formats})
    for _, file, _ in listed_files(subset):  # the files and their NPU-compiled siblings
        (dest / file).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src / file, dest / file)
    write_manifest(dest, subset)
    return dest


@pytest.fixture(scope="session")
def testset_root_sf2(tmp_path_factory):
    """A folder holding a real sf 2 test set (``ROOT/sf2``)."""
    from mobile_kernelnet.testset import make_testset
    root = tmp_path_factory.mktemp("testsets")
    make_testset(2, root)
    return root
