"""The one place that runs ``adb``: devices, shell with timeouts, push/pull, device facts.

The executable is ``--adb`` if given, else ``$ADB``, else ``adb`` on ``PATH``; the server
port is adb's own (``ANDROID_ADB_SERVER_PORT``). Every call is an argument list; device
shell commands are argument lists too, quoted for the device's shell here. Every failure
is an :class:`errors.AdbError` subclass carrying the call, the serial, stdout, stderr and
the exit code, with a message a user can act on; nothing else in the project calls ``adb``.
The messages matched are the real adb's (29.x, driven against ``tests/emulated_device.py``).
"""
from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from .errors import AdbError, AdbNotFound, AdbTimeout, DeviceNotReady

DEFAULT_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class Device:
    """One line of ``adb devices -l``."""

    serial: str
    state: str                      # "device" (ready), "unauthorized", "offline", ...
    details: dict[str, str] = field(default_factory=dict)  # model:, product:, transport_id: ...


GONE = re.compile(r"^(?:adb: )?error: (?:device '[^']*' not found|device offline|device unauthorized|"
                  r"no devices/emulators found|failed to get feature set: .*|closed)", re.MULTILINE)
"""What the real adb (its own lines, not a device program's) says when the device it was
told to use is not, or no longer, usable."""

STATE_HELP = {
    "unauthorized": "accept the USB debugging prompt on the phone (or revoke and re-allow authorisations)",
    "offline": "reconnect the cable or restart adb (`adb kill-server`)",
    "no permissions": "fix the udev rules for the phone's USB id",
}


def _run_killing_group(cmd: list[str], timeout_s: float) -> subprocess.CompletedProcess | None:
    """Run ``cmd`` in its own process group and return its result, or ``None`` after
    killing the whole group (adb and anything it started) when ``timeout_s`` passes."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        return None
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def parse_devices(text: str) -> list[Device]:
    """Devices from ``adb devices -l`` output."""
    devices = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("List of devices", "*")):
            continue
        parts = line.split()
        serial, rest = parts[0], parts[1:]
        state_words = [w for w in rest if ":" not in w]
        details = dict(w.split(":", 1) for w in rest if ":" in w)
        devices.append(Device(serial, " ".join(state_words) or "unknown", details))
    return devices


def find_adb(adb: str | Path | None = None) -> str:
    """Path of the adb executable (``adb`` argument, ``$ADB``, then ``PATH``)."""
    candidate = str(adb) if adb else os.environ.get("ADB") or shutil.which("adb")
    if not candidate:
        raise AdbNotFound("adb not found: install Android platform-tools, then put adb on PATH, "
                          "set $ADB or pass --adb PATH")
    path = shutil.which(candidate) or candidate
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        raise AdbNotFound(f"adb at {candidate!r} is not an executable file")
    return path


class Adb:
    """An adb executable, optionally bound to one device serial."""

    def __init__(self, adb: str | Path | None = None, serial: str | None = None,
                 timeout_s: float = DEFAULT_TIMEOUT_S):
        if not timeout_s > 0:
            raise ValueError(f"adb timeout must be positive, got {timeout_s}")
        self.path, self.serial, self.timeout_s = find_adb(adb), serial, timeout_s

    def _run(self, args: list[str], timeout_s: float | None = None, check: bool = True) -> subprocess.CompletedProcess:
        cmd = [self.path] + (["-s", self.serial] if self.serial else []) + args
        timeout = timeout_s or self.timeout_s
        proc = _run_killing_group(cmd, timeout)
        what = f"`adb {' '.join(args)}`"
        if proc is None:
            raise AdbTimeout(f"{what} did not finish in {timeout:.0f} s (a hung run or an unresponsive "
                             "device); it was killed", cmd, self.serial)
        details = dict(args=cmd, serial=self.serial, stdout=proc.stdout, stderr=proc.stderr,
                       returncode=proc.returncode)
        said = proc.stderr + proc.stdout
        if gone := GONE.search(said):
            raise DeviceNotReady(f"device {self.serial or ''} disconnected or went offline during {what}: "
                                 f"{gone.group(0)}", **details)
        if check and proc.returncode != 0:
            raise AdbError(f"`{self.path} {' '.join(args)}` failed (exit {proc.returncode}): "
                           f"{said.strip() or 'no output'}", **details)
        return proc

    def devices(self) -> list[Device]:
        """Every device adb sees, with its state."""
        return parse_devices(Adb(self.path, None, self.timeout_s)._run(["devices", "-l"]).stdout)

    def select(self, serial: str | None = None) -> "Adb":
        """An :class:`Adb` bound to ``serial`` or to the only device attached; checks it is ready."""
        devices = self.devices()
        if serial is None:
            if not devices:
                raise DeviceNotReady("no Android device attached (`adb devices` lists none)")
            if len(devices) > 1:
                raise DeviceNotReady("several devices attached: choose one with --serial "
                                     f"({', '.join(f'{d.serial} [{d.state}]' for d in devices)})")
            serial = devices[0].serial
        match = [d for d in devices if d.serial == serial]
        if not match:
            raise DeviceNotReady(f"no device with serial {serial!r} (attached: "
                                 f"{', '.join(d.serial for d in devices) or 'none'})", serial=serial)
        if match[0].state != "device":
            raise DeviceNotReady(f"device {serial} is {match[0].state}: "
                                 f"{STATE_HELP.get(match[0].state, 'it is not ready')}", serial=serial)
        return Adb(self.path, serial, self.timeout_s)

    def shell(self, argv: list[str], timeout_s: float | None = None, check: bool = True) -> subprocess.CompletedProcess:
        """Run the device command ``argv`` (each word quoted for the device shell);
        :class:`AdbError` on a non-zero exit if ``check``."""
        if isinstance(argv, str):
            raise TypeError("Adb.shell takes an argument list, not a command string")
        return self._run(["shell", shlex.join(argv)], timeout_s, check)

    def still_there(self) -> None:
        """:class:`DeviceNotReady` unless the bound device is still attached and ready (the
        real adb returns exit 0 and no output from a shell whose connection dropped)."""
        state = self._run(["get-state"], timeout_s=30, check=False)
        if state.stdout.strip() != "device":
            raise DeviceNotReady(f"device {self.serial} disconnected: "
                                 f"{(state.stderr or state.stdout).strip() or 'no state'}",
                                 state.args, self.serial, state.stdout, state.stderr, state.returncode)

    def push(self, local: str | Path, remote: str) -> None:
        if not Path(local).is_file():
            raise AdbError(f"cannot push {local}: no such file", serial=self.serial)
        self._run(["push", str(local), remote], timeout_s=max(self.timeout_s, 300))

    def pull(self, remote: str, local: str | Path) -> None:
        self._run(["pull", remote, str(local)], timeout_s=max(self.timeout_s, 300))

    def properties(self) -> dict[str, str]:
        """Every system property, in one ``getprop`` round trip."""
        return parse_getprop(self.shell(["getprop"]).stdout)

    def facts(self) -> dict:
        """Model, SoC/hardware, Android version, ABI, CPU count and per-core max frequency (kHz)."""
        props = self.properties()
        cpu = self.shell(["sh", "-c", "nproc; for f in /sys/devices/system/cpu/cpu[0-9]*/cpufreq/cpuinfo_max_freq; "
                                      "do cat $f 2>/dev/null || echo 0; done"], check=False).stdout.split()
        freqs = [int(f) for f in cpu[1:] if f.isdigit()]
        return {"serial": self.serial, "model": props.get("ro.product.model", ""),
                "manufacturer": props.get("ro.product.manufacturer", ""),
                "soc": props.get("ro.soc.model") or props.get("ro.board.platform", ""),
                "hardware": props.get("ro.hardware", ""), "android": props.get("ro.build.version.release", ""),
                "sdk": props.get("ro.build.version.sdk", ""), "abi": props.get("ro.product.cpu.abi", ""),
                "cpu_count": int(cpu[0]) if cpu and cpu[0].isdigit() else len(freqs),
                "cpu_max_khz": freqs}


_PROP = re.compile(r"^\[([^\]]+)\]: \[(.*)\]$")


def parse_getprop(text: str) -> dict[str, str]:
    """``[name]: [value]`` lines of ``getprop`` -> a dict."""
    return {m.group(1): m.group(2) for line in text.splitlines() if (m := _PROP.match(line.strip()))}
