"""The harness's errors. :class:`AdbError` carries what a bug report needs (as Mobly's
``AdbError`` does): the argument list, the serial, stdout, stderr and the exit code; it
pickles, so worker processes can hand it back."""
from __future__ import annotations


class AdbError(RuntimeError):
    """adb failed or a device cannot be used. ``str()`` is one line a user can act on."""

    def __init__(self, message: str, args: list[str] | None = None, serial: str | None = None,
                 stdout: str = "", stderr: str = "", returncode: int | None = None):
        super().__init__(message)
        self.message, self.cmd, self.serial = message, list(args or []), serial
        self.stdout, self.stderr, self.returncode = stdout, stderr, returncode

    def __reduce__(self):
        return type(self), (self.message, self.cmd, self.serial, self.stdout, self.stderr, self.returncode)


class AdbNotFound(AdbError):
    """No adb executable."""


class DeviceNotReady(AdbError):
    """No device, several without a serial, or one that is unauthorized / offline / gone."""


class AdbTimeout(AdbError):
    """An adb call did not finish in time (it and its children were killed)."""


class HarnessError(RuntimeError):
    """A run cannot start or a device tool misbehaved (bad binary, bad request, bad output)."""
