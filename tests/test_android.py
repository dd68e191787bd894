"""The Android harness end to end against a fake device (tests/fake_android): a fake
`adb` that keeps the device's files in a temporary folder and runs pushed programs
on the host, and a `benchmark_model` stand-in that really runs the model in LiteRT."""
import json
import os
import platform
import stat
import sys
from pathlib import Path

import pytest

from android_harness.adb import parse_devices
from android_harness.device_bench import check_binary, core_mask
from android_harness.parse import BenchmarkOutputError, parse_benchmark_model
from mobile_kernelnet.cli import main

HERE = Path(__file__).resolve().parent
FIXTURES = HERE / "fixtures" / "android"
HOST_ABI = {"x86_64": "x86_64", "aarch64": "arm64-v8a"}.get(platform.machine(), platform.machine())
SERIAL = "FAKE01"
HOST_FREQS = [1800000] * (os.cpu_count() - 1) + [2400000]
BIG_MASK = format(1 << (os.cpu_count() - 1), "x")


def _launcher(path: Path, script: Path) -> Path:
    path.write_text(f"#!/bin/sh\nexec {sys.executable} {script} \"$@\"\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def _device(serial=SERIAL, state="device", **faults) -> dict:
    props = {"ro.product.model": "Fake Pixel", "ro.product.manufacturer": "Host", "ro.soc.model": "HostSoC",
             "ro.hardware": "host", "ro.build.version.release": "14", "ro.build.version.sdk": "34",
             "ro.product.cpu.abi": HOST_ABI}
    return {"serial": serial, "state": state, "props": props, "details": {"model": "Fake_Pixel"}, **faults}


@pytest.fixture
def fake(tmp_path, monkeypatch):
    """A fake adb on $ADB with one ready device whose cores are the host's (the last one "big":
    taskset really pins the stand-in on the host)."""
    home = tmp_path / "adb_home"
    home.mkdir()

    def set_devices(*devices):
        (home / "devices.json").write_text(json.dumps({"devices": list(devices)}))
        for d in devices:
            (home / d["serial"] / "data/local/tmp").mkdir(parents=True, exist_ok=True)
            for i, khz in enumerate(HOST_FREQS):
                f = home / d["serial"] / f"sys/devices/system/cpu/cpu{i}/cpufreq/cpuinfo_max_freq"
                f.parent.mkdir(parents=True, exist_ok=True)
                f.write_text(f"{khz}\n")
    set_devices(_device())
    monkeypatch.setenv("FAKE_ADB_HOME", str(home))
    monkeypatch.setenv("ADB", str(_launcher(tmp_path / "adb", HERE / "fake_android" / "fake_adb.py")))
    binary = _launcher(tmp_path / "benchmark_model", HERE / "fake_android" / "benchmark_model_standin.py")
    return {"home": home, "set_devices": set_devices, "binary": binary, "tmp": tmp_path}


def _bench(fake, exported, *extra):
    out = fake["tmp"] / "android.json"
    rc = main(["android", "bench", str(exported), "--benchmark-binary", str(fake["binary"]), "--runs", "3",
               "--warmup", "1", "--json", str(out), *extra])
    return rc, (json.loads(out.read_text()) if out.is_file() else None)


def test_parse_real_benchmark_model_outputs():
    cpu = parse_benchmark_model((FIXTURES / "benchmark_model_cpu4.txt").read_text())
    assert cpu["latency_ms_median"] == pytest.approx(576.856) and cpu["latency_stat"] == "median"
    assert cpu["latency_ms_avg"] == pytest.approx(699.438) and cpu["first_inference_ms"] == pytest.approx(670.083)
    assert cpu["init_ms"] == pytest.approx(102.32) and cpu["runs"] == 50
    assert cpu["latency_ms_p95"] == pytest.approx(1373.207) and cpu["peak_memory_mb"] == pytest.approx(99.2031)
    assert cpu["delegates"] == [{"delegate": "TfLiteXNNPackDelegate", "nodes": 49, "of": 49}]
    gpu = parse_benchmark_model((FIXTURES / "benchmark_model_gpu.txt").read_text())
    assert gpu["delegates"][0]["delegate"] == "TfLiteGpuDelegateV2" and gpu["init_ms"] == pytest.approx(5664.363)
    old = parse_benchmark_model((FIXTURES / "benchmark_model_old_peak.txt").read_text())
    assert old["latency_stat"].startswith("mean") and old["latency_ms_median"] == pytest.approx(249.684)
    assert old["peak_memory_mb"] == pytest.approx(138.809) and old["delegates"] == []
    with pytest.raises(BenchmarkOutputError, match="no 'Inference timings'"):
        parse_benchmark_model("INFO: STARTING!\nERROR: Failed to apply delegate.")


def test_parse_real_adb_devices_output():
    devices = parse_devices((FIXTURES / "adb_devices_l.txt").read_text())
    assert [(d.serial, d.state) for d in devices] == [
        ("R58M1234ABC", "device"), ("emulator-5554", "offline"), ("0123456789ABCDEF", "unauthorized")]
    assert devices[0].details["model"] == "SM_G973F"


def test_core_mask_and_binary_checks(tmp_path):
    assert core_mask([1800000, 1800000, 2400000, 2400000], "big") == "c"
    assert core_mask([0, 0], "4,5") == "30" and core_mask([], "all") is None
    elf = tmp_path / "bm"
    elf.write_bytes(b"\x7fELF\x02\x01\x01" + b"\0" * 11 + (183).to_bytes(2, "little") + b"\0" * 40)
    assert check_binary(elf, "arm64-v8a") == "elf"
    from android_harness.device_bench import HarnessError
    with pytest.raises(HarnessError, match="built for arm64-v8a, but the device ABI is x86_64"):
        check_binary(elf, "x86_64")


def test_devices_lists_states(fake, capsys):
    fake["set_devices"](_device(), _device("EMU2", "unauthorized"))
    assert main(["android", "devices"]) == 0
    out = capsys.readouterr().out
    assert "FAKE01" in out and "EMU2" in out and "unauthorized" in out


def test_bench_end_to_end_on_the_fake_device(fake, exported, capsys):
    rc, report = _bench(fake, exported, "--delegates", "cpu,xnnpack", "--threads", "1,2", "--cores", "big")
    assert rc == 0, capsys.readouterr().err
    recs = report["records"]
    assert report["complete"] and report["device"]["model"] == "Fake Pixel" and report["device"]["abi"] == HOST_ABI
    assert len(recs) == 4 * 2 * 2 and all(r["status"] == "ok" for r in recs)
    assert all(r["latency_ms_median"] > 0 and r["runs"] == 3 and r["peak_memory_mb"] is not None for r in recs)
    assert all(r["command"].startswith(f"taskset {BIG_MASK} ") for r in recs)  # the big core
    xnn = [r for r in recs if r["runtime"] == "android-xnnpack"]
    assert all(r["delegate_coverage"] > 0.5 for r in xnn)
    assert all(r["delegate_coverage"] == 0 for r in recs if r["runtime"] == "android-cpu")
    assert list((fake["home"] / SERIAL / "data/local/tmp").iterdir()) == []  # cleaned up
    assert "android-xnnpack" in capsys.readouterr().out


def test_keep_leaves_the_remote_folder(fake, exported):
    rc, _ = _bench(fake, exported, "--delegates", "cpu", "--threads", "1", "--keep")
    assert rc == 0
    (work,) = (fake["home"] / SERIAL / "data/local/tmp").iterdir()
    assert (work / "benchmark_model").is_file() and len(list(work.glob("*.tflite"))) == 4


@pytest.mark.parametrize("devices, message", [
    ([], "no Android device attached"),
    ([_device(), _device("EMU2")], "several devices attached: choose one with --serial"),
    ([_device(state="unauthorized")], "is unauthorized: accept the USB debugging prompt"),
    ([_device(state="offline")], "is offline"),
])
def test_device_faults_are_clear_errors(fake, exported, capsys, devices, message):
    fake["set_devices"](*devices)
    rc, report = _bench(fake, exported, "--delegates", "cpu", "--threads", "1")
    assert rc == 1 and report is None
    assert message in capsys.readouterr().err


def test_no_adb_is_a_clear_error(fake, exported, monkeypatch, capsys):
    monkeypatch.delenv("ADB")
    monkeypatch.setenv("PATH", str(fake["tmp"] / "empty"))
    assert main(["android", "devices"]) == 2
    assert "adb not found" in capsys.readouterr().err
    rc, _ = _bench(fake, exported, "--adb", str(fake["tmp"] / "no-adb"))
    assert rc == 1 and "not an executable file" in capsys.readouterr().err


def test_bad_binaries_are_refused_before_running(fake, exported, capsys):
    text = fake["tmp"] / "notes.txt"
    text.write_text("not a program")
    rc, _ = _bench(fake, exported, "--benchmark-binary", str(text))
    assert rc == 1 and "is not an executable (no ELF header)" in capsys.readouterr().err
    arm = fake["tmp"] / "bm_arm"
    arm.write_bytes(b"\x7fELF\x02\x01\x01" + b"\0" * 11 + (40 if HOST_ABI != "armeabi-v7a" else 62).to_bytes(2, "little"))
    rc, _ = _bench(fake, exported, "--benchmark-binary", str(arm))
    assert rc == 1 and "but the device ABI is" in capsys.readouterr().err


def test_disconnect_mid_run_keeps_finished_records(fake, exported, capsys):
    fake["set_devices"](_device(disconnect_on="--num_threads=2"))
    rc, report = _bench(fake, exported, "--delegates", "cpu", "--threads", "1,2")
    assert rc == 1 and report["complete"] is False
    states = [r["status"] for r in report["records"]]
    assert states[0] == "ok" and states[1] == "error" and set(states[2:]) == {"not run"}
    assert "disconnected" in report["records"][1]["error"]
    assert "kept 1 finished records" in capsys.readouterr().err


def test_hung_run_times_out_and_keeps_finished_records(fake, exported, capsys):
    fake["set_devices"](_device(hang_on="--num_threads=2"))
    rc, report = _bench(fake, exported, "--delegates", "cpu", "--threads", "1,2", "--timeout", "8")
    assert rc == 1
    assert [r["status"] for r in report["records"]][:2] == ["ok", "error"]
    assert "did not finish in 8 s" in report["records"][1]["error"]
    assert list((fake["home"] / SERIAL / "data/local/tmp").iterdir()) == []  # still cleaned up


def test_unavailable_delegate_is_recorded_with_the_tools_words(fake, exported):
    rc, report = _bench(fake, exported, "--delegates", "gpu", "--threads", "1")
    assert rc == 1 and report["complete"]
    assert all(r["status"] == "error" and "GPU acceleration is unsupported" in r["error"]
               for r in report["records"])


def test_on_device_parity_passes_at_the_export_tolerances(fake, exported, testset_root_sf2, capsys):
    runner = _launcher(fake["tmp"] / "runner", HERE / "fake_android" / "runner_standin.py")
    out = fake["tmp"] / "parity.json"
    rc = main(["android", "parity", str(exported), "--runner-binary", str(runner), "--testset", str(testset_root_sf2),
               "--delegates", "cpu,xnnpack", "--images", "2", "--json", str(out)])
    report = json.loads(out.read_text())
    assert rc == 0, capsys.readouterr().err
    rows = {r["format"]: r for r in report["formats"]}
    assert set(rows) == {f"tflite-{k}@{d}" for k in ("fp32", "fp16", "dynamic-int8", "int8") for d in ("cpu", "xnnpack")}
    assert rows["tflite-fp32@xnnpack"]["max_abs"] <= 1e-4 and report["device"]["model"] == "Fake Pixel"
    assert list((fake["home"] / SERIAL / "data/local/tmp").iterdir()) == []


def test_on_device_parity_fails_on_wrong_outputs(fake, exported, testset_root_sf2, capsys):
    """A runner whose outputs are scrambled (the layout bug parity exists to catch) fails."""
    bad = fake["tmp"] / "bad_runner.py"
    bad.write_text((HERE / "fake_android" / "runner_standin.py").read_text().replace(
        "np.asarray(value, dtype=\"<f4\")", "np.asarray(value, dtype=\"<f4\")[:, ::-1]"))
    runner = _launcher(fake["tmp"] / "runner", bad)
    rc = main(["android", "parity", str(exported), "--runner-binary", str(runner), "--testset", str(testset_root_sf2),
               "--delegates", "xnnpack", "--images", "1", "--json", str(fake["tmp"] / "p.json")])
    assert rc == 1 and "FAILED: tflite-fp32@xnnpack" in capsys.readouterr().err
