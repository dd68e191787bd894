"""Write an example `mkn android bench` report from three emulated devices driven in parallel
by the real adb (every one is this host's CPU, not a phone):
``python tests/fake_android/make_example.py EXPORT_DIR OUT.json``."""
import os
import platform
import stat
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent


def launcher(path: Path, script: Path) -> Path:
    path.write_text(f"#!/bin/sh\nexec {sys.executable} {script} \"$@\"\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def main(export_dir: str, out: str) -> int:
    from emulated_device import EmulatedDevice, PrivateAdbServer
    from mobile_kernelnet.cli import main as mkn

    abi = {"x86_64": "x86_64", "aarch64": "arm64-v8a"}.get(platform.machine(), platform.machine())
    names = ("emulated phone A", "emulated phone B", "emulated phone C")
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        server = PrivateAdbServer(home / "adb_home")
        os.environ.update(server.env)
        devices = [EmulatedDevice(home / f"device{i}", props={
            "ro.product.model": name, "ro.soc.model": f"host CPU ({platform.processor() or platform.machine()})",
            "ro.build.version.release": "n/a", "ro.product.cpu.abi": abi}) for i, name in enumerate(names)]
        try:
            for device in devices:
                server.connect(device)
            binary = launcher(home / "benchmark_model", HERE / "benchmark_model_standin.py")
            return mkn(["android", "bench", export_dir, "--all-devices", "--benchmark-binary", str(binary),
                        "--delegates", "cpu,xnnpack", "--threads", "1", "--runs", "20", "--warmup", "3",
                        "--repeats", "3", "--json", out])
        finally:
            server.close()
            for device in devices:
                device.close()


if __name__ == "__main__":
    sys.path.insert(0, str(HERE.parent))
    sys.exit(main(*sys.argv[1:]))
