"""The Android harness end to end against the real adb client and server driving emulated
devices (tests/emulated_device.py: the adb transport, shell v2 and sync protocols over
TCP), with a `benchmark_model` stand-in that really runs the model in LiteRT on the host."""
import json
import os
import pickle
import platform
import stat
import sys
from pathlib import Path

import pytest

from android_harness.adb import Adb, parse_devices, parse_getprop
from android_harness.device_bench import check_binary, core_mask
from android_harness.errors import AdbError, DeviceNotReady
from android_harness.parse import BenchmarkOutputError, parse_benchmark_model
from emulated_device import PIXEL_8, EmulatedDevice, PrivateAdbServer
from mobile_kernelnet.cli import main

HERE = Path(__file__).resolve().parent
FIXTURES = HERE / "fixtures" / "android"
HOST_ABI = {"x86_64": "x86_64", "aarch64": "arm64-v8a"}.get(platform.machine(), platform.machine())
HOST_FREQS = tuple([1800000] * (os.cpu_count() - 1) + [2400000])
BIG_MASK = format(1 << (os.cpu_count() - 1), "x")


def _launcher(path: Path, script: Path) -> Path:
    path.write_text(f"#!/bin/sh\nexec {sys.executable} {script} \"$@\"\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


@pytest.fixture
def android(tmp_path, monkeypatch):
    """A private real adb server (its env set for the harness) and ``add(**device)``, which
    connects a new emulated device (host ABI, the host's cores with the last one "big":
    taskset really pins the stand-in on the host) and returns it."""
    server = PrivateAdbServer(tmp_path / "adb_home")
    for k, v in server.env.items():
        monkeypatch.setenv(k, v)
    devices = []

    def add(**kwargs):
        props = {**PIXEL_8, "ro.product.cpu.abi": HOST_ABI, **kwargs.pop("props", {})}
        dev = EmulatedDevice(tmp_path / f"device{len(devices)}", props=props, cpu_max_khz=HOST_FREQS, **kwargs)
        devices.append(dev)
        server.connect(dev)
        return dev
    binary = _launcher(tmp_path / "benchmark_model", HERE / "fake_android" / "benchmark_model_standin.py")
    yield {"add": add, "server": server, "binary": binary, "tmp": tmp_path}
    server.close()
    for dev in devices:
        dev.close()


def _remote_tmp(dev: EmulatedDevice) -> list[Path]:
    return list((dev.root / "data" / "local" / "tmp").iterdir())


def _bench(android, exported, *extra):
    out = android["tmp"] / "android.json"
    repeats = [] if "--repeats" in extra or "--sustained" in extra else ["--repeats", "1"]
    rc = main(["android", "bench", str(exported), "--benchmark-binary", str(android["binary"]), "--runs", "3",
               "--warmup", "1", "--json", str(out), *repeats, *extra])
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


def test_devices_lists_states(android, capsys):
    ready, locked = android["add"](), android["add"](fault="unauthorized")
    assert main(["android", "devices"]) == 0
    out = capsys.readouterr().out
    assert ready.serial in out and locked.serial in out and "unauthorized" in out and "Pixel_8" in out


def test_facts_come_from_one_getprop_and_errors_carry_the_call(android):
    dev = android["add"]()
    adb = Adb().select(dev.serial)
    facts = adb.facts()
    assert (facts["model"], facts["abi"], facts["soc"]) == ("Pixel 8", HOST_ABI, "Tensor G3")
    assert facts["cpu_max_khz"] == list(HOST_FREQS) and facts["cpu_count"] == os.cpu_count()
    assert parse_getprop("[ro.a]: [x y]\n[ro.b]: []\nnoise\n") == {"ro.a": "x y", "ro.b": ""}
    with pytest.raises(AdbError) as err:
        adb.shell(["sh", "-c", "echo out; echo oops >&2; exit 7"])
    e = err.value
    assert (e.returncode, e.serial, e.stdout, e.stderr) == (7, dev.serial, "out\n", "oops\n")
    assert e.cmd[1:4] == ["-s", dev.serial, "shell"]
    again = pickle.loads(pickle.dumps(e))
    assert type(again) is AdbError and (again.cmd, again.returncode, str(again)) == (e.cmd, 7, str(e))
    quoted = adb.shell(["echo", "a b; rm -rf /", "$HOME"]).stdout  # words stay words on the device
    assert quoted == "a b; rm -rf / $HOME\n"
    with pytest.raises(TypeError, match="argument list"):
        adb.shell("echo hi")


def test_bench_end_to_end_on_an_emulated_device(android, exported, capsys):
    dev = android["add"]()
    rc, report = _bench(android, exported, "--delegates", "cpu,xnnpack", "--threads", "1,2", "--cores", "big")
    assert rc == 0, capsys.readouterr().err
    recs = report["records"]
    assert report["complete"] and report["device"]["model"] == "Pixel 8" and report["device"]["abi"] == HOST_ABI
    assert len(recs) == 4 * 2 * 2 and all(r["status"] == "ok" for r in recs)
    assert all(r["latency_ms_median"] > 0 and r["runs"] == 3 and r["peak_memory_mb"] is not None for r in recs)
    assert all(r["command"].startswith(f"taskset {BIG_MASK} ") for r in recs)  # the big core
    xnn = [r for r in recs if r["runtime"] == "android-xnnpack"]
    assert all(r["delegate_coverage"] > 0.5 for r in xnn)
    assert all(r["delegate_coverage"] == 0 for r in recs if r["runtime"] == "android-cpu")
    assert _remote_tmp(dev) == []  # cleaned up
    assert "android-xnnpack" in capsys.readouterr().out


def test_keep_leaves_the_remote_folder(android, exported):
    dev = android["add"]()
    rc, _ = _bench(android, exported, "--delegates", "cpu", "--threads", "1", "--keep")
    assert rc == 0
    (work,) = _remote_tmp(dev)
    assert (work / "benchmark_model").is_file() and len(list(work.glob("*.tflite"))) == 4


@pytest.mark.parametrize("faults, message", [
    ([], "no Android device attached"),
    ([None, None], "several devices attached: choose one with --serial"),
    (["unauthorized"], "is unauthorized: accept the USB debugging prompt"),
    (["offline"], "is offline"),
])
def test_device_faults_are_clear_errors(android, exported, capsys, faults, message):
    for fault in faults:
        android["add"](fault=fault)
    rc, report = _bench(android, exported, "--delegates", "cpu", "--threads", "1")
    assert rc == 1 and report is None
    assert message in capsys.readouterr().err


def test_no_adb_is_a_clear_error(android, exported, monkeypatch, capsys):
    monkeypatch.delenv("ADB")
    monkeypatch.setenv("PATH", str(android["tmp"] / "empty"))
    assert main(["android", "devices"]) == 2
    assert "adb not found" in capsys.readouterr().err
    rc, _ = _bench(android, exported, "--adb", str(android["tmp"] / "no-adb"))
    assert rc == 1 and "not an executable file" in capsys.readouterr().err


def test_bad_binaries_are_refused_before_running(android, exported, capsys):
    android["add"]()
    text = android["tmp"] / "notes.txt"
    text.write_text("not a program")
    rc, _ = _bench(android, exported, "--benchmark-binary", str(text))
    assert rc == 1 and "is not an executable (no ELF header)" in capsys.readouterr().err
    arm = android["tmp"] / "bm_arm"
    arm.write_bytes(b"\x7fELF\x02\x01\x01" + b"\0" * 11 + (40 if HOST_ABI != "armeabi-v7a" else 62).to_bytes(2, "little"))
    rc, _ = _bench(android, exported, "--benchmark-binary", str(arm))
    assert rc == 1 and "but the device ABI is" in capsys.readouterr().err


def test_disconnect_mid_run_keeps_finished_records(android, exported, capsys):
    """The real adb returns exit 0 and no output when the connection drops under a shell:
    the harness asks the server, which then lists the device offline."""
    android["add"](fault="drop-run", fault_on="--num_threads=2")
    rc, report = _bench(android, exported, "--delegates", "cpu", "--threads", "1,2")
    assert rc == 1 and report["complete"] is False
    states = [r["status"] for r in report["records"]]
    assert states[0] == "ok" and states[1] == "error" and set(states[2:]) == {"not run"}
    assert "disconnected" in report["records"][1]["error"]
    assert "kept 1 finished records" in capsys.readouterr().err


def test_disconnect_mid_push_is_a_clear_error(android, exported, capsys):
    android["add"](fault="drop-transfer", fault_on=".tflite")
    rc, report = _bench(android, exported, "--delegates", "cpu", "--threads", "1")
    assert rc == 1
    err = capsys.readouterr().err
    assert "disconnected or went offline during `adb push" in err or "couldn't read from device" in err, err


def test_hung_run_times_out_and_keeps_finished_records(android, exported, capsys):
    dev = android["add"](fault="hang", fault_on="--num_threads=2")
    rc, report = _bench(android, exported, "--delegates", "cpu", "--threads", "1,2", "--timeout", "8")
    assert rc == 1
    assert [r["status"] for r in report["records"]][:2] == ["ok", "error"]
    assert "did not finish in 8 s" in report["records"][1]["error"]
    assert _remote_tmp(dev) == []  # still cleaned up


def test_unavailable_delegate_is_recorded_with_the_tools_words(android, exported):
    android["add"]()
    rc, report = _bench(android, exported, "--delegates", "gpu", "--threads", "1")
    assert rc == 1 and report["complete"]
    assert all(r["status"] == "error" and "GPU acceleration is unsupported" in r["error"]
               for r in report["records"])


def test_on_device_parity_passes_at_the_export_tolerances(android, exported, testset_root_sf2, capsys):
    dev = android["add"]()
    runner = _launcher(android["tmp"] / "runner", HERE / "fake_android" / "runner_standin.py")
    out = android["tmp"] / "parity.json"
    rc = main(["android", "parity", str(exported), "--runner-binary", str(runner), "--testset", str(testset_root_sf2),
               "--delegates", "cpu,xnnpack", "--images", "2", "--json", str(out)])
    report = json.loads(out.read_text())
    assert rc == 0, capsys.readouterr().err
    rows = {r["format"]: r for r in report["formats"]}
    assert set(rows) == {f"tflite-{k}@{d}" for k in ("fp32", "fp16", "dynamic-int8", "int8") for d in ("cpu", "xnnpack")}
    assert rows["tflite-fp32@xnnpack"]["max_abs"] <= 1e-4 and report["device"]["model"] == "Pixel 8"
    assert _remote_tmp(dev) == []


def test_on_device_parity_fails_on_wrong_outputs(android, exported, testset_root_sf2, capsys):
    """A runner whose outputs are scrambled (the layout bug parity exists to catch) fails."""
    android["add"]()
    bad = android["tmp"] / "bad_runner.py"
    bad.write_text((HERE / "fake_android" / "runner_standin.py").read_text().replace(
        "np.asarray(value, dtype=\"<f4\")", "np.asarray(value, dtype=\"<f4\")[:, ::-1]"))
    runner = _launcher(android["tmp"] / "runner", bad)
    rc = main(["android", "parity", str(exported), "--runner-binary", str(runner), "--testset", str(testset_root_sf2),
               "--delegates", "xnnpack", "--images", "1", "--json", str(android["tmp"] / "p.json")])
    assert rc == 1 and "FAILED: tflite-fp32@xnnpack" in capsys.readouterr().err


def test_three_phones_run_in_parallel_into_one_report(android, exported, capsys):
    """One worker per phone; the phone that drops mid-run keeps its finished record and
    costs the others nothing."""
    a = android["add"]()
    b = android["add"](props={"ro.product.model": "Galaxy S24"})
    c = android["add"](fault="drop-run", fault_on="--num_threads=2")
    rc, report = _bench(android, exported, "--all-devices", "--delegates", "cpu", "--threads", "1,2")
    assert rc == 1 and report["complete"] is False and set(report["devices"]) == {a.serial, b.serial, c.serial}
    by = {s: [r for r in report["records"] if r["device"] == s] for s in report["devices"]}
    for ok in (a, b):
        assert len(by[ok.serial]) == 4 * 2 and all(r["status"] == "ok" for r in by[ok.serial])
        assert "error" not in report["devices"][ok.serial] and _remote_tmp(ok) == []
    assert [r["status"] for r in by[c.serial]][:2] == ["ok", "error"]
    assert "disconnected" in report["devices"][c.serial]["error"]
    assert report["devices"][b.serial]["model"] == "Galaxy S24"
    out = capsys.readouterr()
    assert f"kept 1 finished records of {c.serial}" in out.err
    assert out.out.count(a.serial) >= 1 + 8  # the device line and a device column in the table
    md = (android["tmp"] / "android.md").read_text()
    assert md.splitlines()[2].startswith("| device |")
    rc, two = _bench(android, exported, "--serial", a.serial, "--serial", b.serial, "--delegates", "cpu",
                     "--threads", "1")
    assert rc == 0 and {r["device"] for r in two["records"]} == {a.serial, b.serial} and "device" not in two


def test_repeats_give_a_median_interval_and_sustained_runs_show_latency_over_time(android, exported):
    android["add"]()
    rc, report = _bench(android, exported, "--delegates", "cpu", "--threads", "1", "--repeats", "3",
                        "--cooldown", "0.3")
    assert rc == 0
    for r in report["records"]:
        meds = r["invocation_medians_ms"]
        assert r["invocations"] == 3 and len(meds) == 3 and r["latency_ms_median"] == sorted(meds)[1]
        lo, hi = r["latency_ms_median_ci95"]
        assert min(meds) <= lo <= r["latency_ms_median"] <= hi <= max(meds)
        assert r["latency_ms_p5"] <= r["latency_ms_median"] <= r["latency_ms_p95"]
        t = [p["t_s"] for p in r["over_time"]]
        assert t == sorted(t) and t[2] - t[0] >= 0.6  # the cool-downs happened
    rc, sustained = _bench(android, exported, "--delegates", "cpu", "--threads", "1", "--sustained", "4s")
    assert rc == 0
    for r in sustained["records"]:  # invoked until 4 s had passed: at least two invocations
        assert r["invocations"] >= 2 and len(r["invocation_medians_ms"]) == r["invocations"]


def test_bootstrap_interval_and_throttling_summary():
    from android_harness.stats import bootstrap_median_ci, summarize
    lo, hi = bootstrap_median_ci([10.0, 11.0, 12.0, 13.0, 50.0])
    assert 10.0 <= lo <= 12.0 <= hi <= 50.0 and bootstrap_median_ci([10.0, 11.0, 12.0, 13.0, 50.0]) == (lo, hi)
    wide, narrow = bootstrap_median_ci([5, 10, 15, 20, 25]), bootstrap_median_ci([14, 15, 15, 15, 16])
    assert wide[1] - wide[0] > narrow[1] - narrow[0]
    base = {"init_ms": 1, "first_inference_ms": 2, "latency_stat": "median", "delegates": [], "delegate_coverage": 0,
            "runs": 5, "latency_ms_avg": 1, "peak_memory_mb": 3}
    hot = summarize([{**base, "latency_ms_median": m, "t_s": i * 10.0} for i, m in enumerate([10, 10, 11, 14, 18, 20, 21, 22])])
    assert hot["throttle_ratio"] == pytest.approx(21.5 / 10) and len(hot["over_time"]) == 8


def test_gate_compares_intervals_when_both_sides_have_them():
    from bench.benchmark import compare
    from bench.records import BenchRecord

    def rec(median, ci, device="A"):
        return BenchRecord("kernelnet", "mobile", 2, "tflite-int8", "android-cpu", 1, 256, status="ok",
                           device=device, kernel_l1=0.3, latency_ms_median=median, latency_ms_median_ci95=ci)
    old, noisy = rec(10.0, [9.0, 12.0]), rec(12.0, [10.0, 14.0])  # x1.2 medians, overlapping
    slow = rec(16.0, [15.0, 17.0])
    assert compare([noisy], [old], 1.1, 0.01)["regressions"] == []
    (line,) = compare([slow], [old], 1.1, 0.01)["regressions"]
    assert "95% interval [9.00, 12.00] -> [15.00, 17.00]" in line and "on A" in line
    assert compare([rec(16.0, [15.0, 17.0], device="B")], [old], 1.1, 0.01)["matched"] == 0  # another phone
