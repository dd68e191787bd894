"""Write an example `mkn android bench` report from an emulated device driven by the real adb
(host CPU, not a phone):
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
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        server = PrivateAdbServer(home / "adb_home")
        os.environ.update(server.env)
        props = {"ro.product.model": "emulated device (this host's CPU)", "ro.soc.model": platform.processor(),
                 "ro.build.version.release": "n/a", "ro.product.cpu.abi": abi}
        device = EmulatedDevice(home / "device", props=props)
        try:
            server.connect(device)
            binary = launcher(home / "benchmark_model", HERE / "benchmark_model_standin.py")
            return mkn(["android", "bench", export_dir, "--benchmark-binary", str(binary), "--delegates",
                        "cpu,xnnpack", "--threads", "1,2", "--runs", "20", "--warmup", "3", "--json", out])
        finally:
            server.close()
            device.close()


if __name__ == "__main__":
    sys.path.insert(0, str(HERE.parent))
    sys.exit(main(*sys.argv[1:]))
