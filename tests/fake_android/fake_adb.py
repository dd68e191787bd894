"""A fake ``adb`` for tests: devices described in ``$FAKE_ADB_HOME/devices.json``, each
device's files under ``$FAKE_ADB_HOME/<serial>/`` (device paths ``/data/local/tmp`` and
``/sys/devices/system/cpu`` are mapped there), shell commands run on the host.

devices.json: ``{"devices": [{"serial", "state", "props": {getprop name: value},
"disconnect_on": substring or null (the device vanishes at a shell command containing it),
"hang_on": substring or null (a shell command containing it never returns)}]}``.
Messages and exit codes follow the real adb's.
"""
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

HOME = Path(os.environ["FAKE_ADB_HOME"])
MAPPED = ("/data/local/tmp", "/sys/devices/system/cpu")


def load():
    return json.loads((HOME / "devices.json").read_text())


def save(state):
    (HOME / "devices.json").write_text(json.dumps(state))


def die(msg, code=1):
    print(msg, file=sys.stderr)
    sys.exit(code)


def local(path, serial):
    for m in MAPPED:
        if path.startswith(m):
            return str(HOME / serial) + path
    return path


def main(argv):
    state = load()
    serial = None
    if argv[:1] == ["-s"]:
        serial, argv = argv[1], argv[2:]
    if argv[:1] == ["devices"]:
        print("List of devices attached")
        for d in state["devices"]:
            extra = " ".join(f"{k}:{v}" for k, v in d.get("details", {}).items())
            print(f"{d['serial']:<22} {d['state']} {extra}".rstrip())
        print()
        return 0
    devices = state["devices"]
    if serial is None:
        if not devices:
            die("adb: no devices/emulators found")
        if len(devices) > 1:
            die("adb: more than one device/emulator")
        serial = devices[0]["serial"]
    dev = next((d for d in devices if d["serial"] == serial), None)
    if dev is None:
        die(f"adb: device '{serial}' not found")
    if dev["state"] == "unauthorized":
        die("adb: device unauthorized.\nThis adb server's $ADB_VENDOR_KEYS is not set")
    if dev["state"] == "offline":
        die("adb: device offline")
    if dev.get("disconnect_on") and dev["disconnect_on"] in " ".join(argv):
        state["devices"] = [d for d in devices if d["serial"] != serial]
        save(state)
        die(f"adb: device '{serial}' not found")
    cmd, args = argv[0], argv[1:]
    root = HOME / serial
    if cmd == "shell":
        line = " ".join(args)
        if dev.get("hang_on") and dev["hang_on"] in line:
            time.sleep(3600)
        m = re.fullmatch(r"getprop (\S+)", line.strip())
        if m:
            print(dev.get("props", {}).get(m.group(1).strip("'\""), ""))
            return 0
        for mapped in MAPPED:
            line = line.replace(mapped, str(root) + mapped)
        proc = subprocess.run(["sh", "-c", line], cwd=root)
        return proc.returncode
    if cmd == "push":
        src, dst = args
        dst = Path(local(dst, serial))
        if dst.is_dir():
            dst = dst / Path(src).name
        if not dst.parent.is_dir():
            die(f"adb: error: failed to copy '{src}' to '{args[1]}': remote couldn't create file: No such file or directory")
        shutil.copyfile(src, dst)
        print(f"{src}: 1 file pushed, 0 skipped.")
        return 0
    if cmd == "pull":
        src, dst = args
        shutil.copyfile(local(src, serial), dst)
        print(f"{src}: 1 file pulled, 0 skipped.")
        return 0
    die(f"adb: unknown command {cmd}")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
