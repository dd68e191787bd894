"""An emulated Android device for the harness's tests: a TCP server speaking the adb
transport protocol as ``adbd`` does, driven by the real ``adb`` client and server.

What is real: the adb client and server (``.toolchain/adb``), the transport protocol
between the server and this device (CNXN / AUTH / OPEN / OKAY / WRTE / CLSE, AOSP's
``protocol.txt``), the shell v2 protocol (stdout / stderr / exit-status packets) and the
sync protocol (STAT / LIST / SEND / RECV / DATA / DONE / OKAY / FAIL, ``SYNC.TXT``).
What is not: the device. Its storage is a host folder (device paths under ``/data``,
``/sdcard`` and ``/sys`` map into it), ``getprop`` answers from a dict, and every other
shell command runs in the host's ``sh`` with those paths rewritten -- so a pushed
program must be one the host can run (the stand-ins in ``tests/fake_android/``).

Faults (``fault=``): ``"unauthorized"`` (AUTH is asked and never accepted),
``"offline"`` (the connection is taken but never answered), ``"drop-transfer"`` (the
connection closes after the first DATA of a push), ``"drop-run"`` (it closes once a
program has started), ``"hang"`` (programs never finish); the last three only where the
command or pushed path contains ``fault_on``, when it is given.
"""
from __future__ import annotations

import os
import re
import shlex
import socket
import struct
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

A_CNXN, A_AUTH, A_OPEN, A_OKAY, A_CLSE, A_WRTE = (int.from_bytes(c, "little") for c in
                                                  (b"CNXN", b"AUTH", b"OPEN", b"OKAY", b"CLSE", b"WRTE"))
A_VERSION = 0x01000001
MAX_PAYLOAD = 256 * 1024
AUTH_TOKEN = 1
SHELL_STDOUT, SHELL_STDERR, SHELL_EXIT = 1, 2, 3
FAULTS = (None, "unauthorized", "offline", "drop-transfer", "drop-run", "hang")
DEVICE_DIRS = ("data", "sdcard", "sys")

PIXEL_8 = {"ro.product.model": "Pixel 8", "ro.product.manufacturer": "Google", "ro.product.name": "shiba",
           "ro.product.device": "shiba", "ro.soc.model": "Tensor G3", "ro.board.platform": "zuma",
           "ro.hardware": "shiba", "ro.build.version.release": "14", "ro.build.version.sdk": "34",
           "ro.product.cpu.abi": "arm64-v8a"}
"""Properties of the default device (a phone the toolkit targets; the numbers are not measured)."""


def message(command: int, arg0: int, arg1: int, data: bytes = b"") -> bytes:
    """One adb transport message: the 24-byte header (command, args, length, byte sum,
    magic) and its payload."""
    return struct.pack("<6I", command, arg0, arg1, len(data), sum(data) & 0xFFFFFFFF,
                       command ^ 0xFFFFFFFF) + data


def shell_packet(kind: int, data: bytes) -> bytes:
    """One shell v2 packet: id byte, little-endian length, data."""
    return struct.pack("<BI", kind, len(data)) + data


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("host closed the connection")
        buf += chunk
    return buf


class Stream:
    """One open service: bytes the host wrote arrive in ``inbox``; :meth:`send` writes
    back one WRTE at a time, waiting for the host's OKAY (adb's flow control)."""

    def __init__(self, conn: "Connection", local_id: int, remote_id: int):
        self.conn, self.local_id, self.remote_id = conn, local_id, remote_id
        self.inbox = b""
        self.cond = threading.Condition()
        self.acked = threading.Event()
        self.acked.set()
        self.closed = False

    def send(self, data: bytes) -> None:
        for i in range(0, len(data), MAX_PAYLOAD):
            if not self.acked.wait(timeout=60) or self.closed:
                raise ConnectionError("host stopped reading")
            self.acked.clear()
            self.conn.write(message(A_WRTE, self.local_id, self.remote_id, data[i:i + MAX_PAYLOAD]))

    def read(self, n: int) -> bytes:
        """Exactly ``n`` bytes the host wrote (blocks)."""
        with self.cond:
            while len(self.inbox) < n:
                if self.closed:
                    raise ConnectionError("stream closed")
                self.cond.wait()
            data, self.inbox = self.inbox[:n], self.inbox[n:]
        return data

    def deliver(self, data: bytes) -> None:
        with self.cond:
            self.inbox += data
            self.cond.notify_all()

    def end(self) -> None:
        """Mark the stream closed and wake whoever waits on it (to send or to read)."""
        self.closed = True
        self.acked.set()
        with self.cond:
            self.cond.notify_all()

    def close(self) -> None:
        if not self.closed:
            self.end()
            self.conn.write(message(A_CLSE, self.local_id, self.remote_id))


@dataclass
class EmulatedDevice:
    """A device listening on ``127.0.0.1:port`` (``adb connect 127.0.0.1:PORT``)."""

    root: Path
    props: dict = field(default_factory=lambda: dict(PIXEL_8))
    fault: str | None = None
    fault_on: str | None = None     # run / push faults only where the command or path holds this
    cpu_max_khz: tuple[int, ...] = (2000000, 2000000, 2900000, 2900000)

    def __post_init__(self):
        if self.fault not in FAULTS:
            raise ValueError(f"fault {self.fault!r}: one of {FAULTS}")
        self.root = Path(self.root)
        (self.root / "data" / "local" / "tmp").mkdir(parents=True, exist_ok=True)
        for i, khz in enumerate(self.cpu_max_khz):
            f = self.root / "sys" / "devices" / "system" / "cpu" / f"cpu{i}" / "cpufreq" / "cpuinfo_max_freq"
            f.parent.mkdir(parents=True, exist_ok=True)
            f.write_text(f"{khz}\n")
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.connections: list[Connection] = []
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def serial(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self.server.accept()
            except OSError:
                return
            conn = Connection(self, sock)
            self.connections.append(conn)
            threading.Thread(target=conn.serve, daemon=True).start()

    def close(self) -> None:
        self.server.close()
        for conn in self.connections:
            conn.drop()

    # -- what the device does --------------------------------------------------------
    def host_path(self, device_path: str) -> Path:
        """Where a device path lives on the host (``/data/x`` -> ``root/data/x``)."""
        return self.root / device_path.lstrip("/")

    def rewrite(self, command: str) -> str:
        """A device shell command with its device paths mapped into :attr:`root`."""
        return re.sub(rf"(?<![\w./-])/({'|'.join(DEVICE_DIRS)})(?=/|\b)", lambda m: f"{self.root}/{m.group(1)}",
                      command)

    def faulty(self, fault: str, where: str) -> bool:
        """Whether ``fault`` strikes the command or path ``where``."""
        return self.fault == fault and (self.fault_on is None or self.fault_on in where)

    def getprop(self, args: list[str]) -> tuple[bytes, int]:
        if not args:
            return "".join(f"[{k}]: [{v}]\n" for k, v in sorted(self.props.items())).encode(), 0
        return f"{self.props.get(args[0], '')}\n".encode(), 0


class Connection:
    """One transport connection from the adb server."""

    def __init__(self, device: EmulatedDevice, sock: socket.socket):
        self.device, self.sock = device, sock
        self.lock = threading.Lock()
        self.streams: dict[int, Stream] = {}
        self.next_id = 1
        self.online = False

    def write(self, data: bytes) -> None:
        with self.lock:
            try:
                self.sock.sendall(data)
            except OSError:
                pass

    def drop(self) -> None:
        """Close the TCP connection (a cable pulled)."""
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        for s in self.streams.values():
            s.end()

    def serve(self) -> None:
        try:
            while True:
                cmd, arg0, arg1, length, _, magic = struct.unpack("<6I", _recv_exact(self.sock, 24))
                if magic != cmd ^ 0xFFFFFFFF:
                    raise ConnectionError("bad magic")
                self.handle(cmd, arg0, arg1, _recv_exact(self.sock, length) if length else b"")
        except (ConnectionError, OSError):
            self.drop()

    def handle(self, cmd: int, arg0: int, arg1: int, data: bytes) -> None:
        dev = self.device
        if cmd == A_CNXN:
            if dev.fault == "offline":
                return
            if dev.fault == "unauthorized":
                self.write(message(A_AUTH, AUTH_TOKEN, 0, os.urandom(20)))
                return
            props = ";".join(f"{k}={dev.props.get(k, '')}" for k in ("ro.product.name", "ro.product.model",
                                                                       "ro.product.device"))
            self.write(message(A_CNXN, A_VERSION, MAX_PAYLOAD, f"device::{props};features=shell_v2,cmd".encode()))
            self.online = True
        elif cmd == A_AUTH:
            if arg0 == 2:  # a signature: never valid here, ask again (the host then offers its key)
                self.write(message(A_AUTH, AUTH_TOKEN, 0, os.urandom(20)))
            # arg0 == 3, the host's public key: the user never accepts the prompt
        elif cmd == A_OPEN and self.online:
            service = data.rstrip(b"\0").decode()
            local_id, self.next_id = self.next_id, self.next_id + 1
            stream = Stream(self, local_id, arg0)
            self.streams[local_id] = stream
            self.write(message(A_OKAY, local_id, arg0))
            threading.Thread(target=self.run_service, args=(stream, service), daemon=True).start()
        elif cmd == A_WRTE and arg1 in self.streams:
            self.streams[arg1].deliver(data)
            self.write(message(A_OKAY, arg1, arg0))
        elif cmd == A_OKAY and arg1 in self.streams:
            self.streams[arg1].acked.set()
        elif cmd == A_CLSE and arg1 in self.streams:
            stream = self.streams.pop(arg1)
            stream.close()

    # -- services ------------------------------------------------------------------------
    def run_service(self, stream: Stream, service: str) -> None:
        try:
            if service.startswith("shell"):
                options, _, command = service.partition(":")
                self.shell(stream, command, v2="v2" in options.split(","))
            elif service == "sync:":
                Sync(self, stream).serve()
            stream.close()
        except (ConnectionError, OSError):
            pass

    def shell(self, stream: Stream, command: str, v2: bool) -> None:
        def out(kind: int, data: bytes) -> None:
            if data:
                stream.send(shell_packet(kind, data) if v2 else data)
        words = shlex.split(command) if command.strip() else []
        if words[:1] == ["getprop"]:
            text, rc = self.device.getprop(words[1:])
            out(SHELL_STDOUT, text)
        else:
            if self.device.faulty("hang", command):
                threading.Event().wait()
            proc = subprocess.Popen(["sh", "-c", self.device.rewrite(command)], cwd=self.device.root,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            if self.device.faulty("drop-run", command):
                self.drop()
                proc.kill()
                raise ConnectionError("dropped mid-run")
            stdout, stderr = proc.communicate()
            out(SHELL_STDOUT, stdout)
            out(SHELL_STDERR, stderr)
            rc = proc.returncode
        if v2:
            stream.send(shell_packet(SHELL_EXIT, bytes([rc & 0xFF])))


class Sync:
    """The ``sync:`` service on one stream (requests: 4-byte id, little-endian length)."""

    def __init__(self, conn: Connection, stream: Stream):
        self.conn, self.stream = conn, stream

    def request(self) -> tuple[bytes, bytes]:
        head = self.stream.read(8)
        n = struct.unpack("<I", head[4:])[0]
        return head[:4], self.stream.read(n) if n else b""

    def fail(self, text: str) -> None:
        self.stream.send(b"FAIL" + struct.pack("<I", len(text)) + text.encode())

    def serve(self) -> None:
        while True:
            rid, arg = self.request()
            path = self.conn.device.host_path(arg.decode()) if rid != b"QUIT" else None
            if rid == b"STAT":
                try:
                    st = path.stat()
                    self.stream.send(b"STAT" + struct.pack("<3I", st.st_mode, st.st_size & 0xFFFFFFFF,
                                                            int(st.st_mtime)))
                except OSError:
                    self.stream.send(b"STAT" + struct.pack("<3I", 0, 0, 0))
            elif rid == b"LIST":
                for entry in sorted(path.iterdir()) if path.is_dir() else []:
                    st = entry.stat()
                    name = entry.name.encode()
                    self.stream.send(b"DENT" + struct.pack("<4I", st.st_mode, st.st_size & 0xFFFFFFFF,
                                                            int(st.st_mtime), len(name)) + name)
                self.stream.send(b"DONE" + struct.pack("<4I", 0, 0, 0, 0))
            elif rid == b"SEND":
                self.receive_file(arg.decode())
            elif rid == b"RECV":
                if not path.is_file():
                    self.fail(f"remote object '{arg.decode()}' does not exist")
                    continue
                data = path.read_bytes()
                for i in range(0, len(data), 64 * 1024):
                    chunk = data[i:i + 64 * 1024]
                    self.stream.send(b"DATA" + struct.pack("<I", len(chunk)) + chunk)
                self.stream.send(b"DONE" + struct.pack("<I", 0))
            else:  # QUIT or unknown
                return

    def receive_file(self, spec: str) -> None:
        remote, _, mode = spec.rpartition(",")
        dest = self.conn.device.host_path(remote)
        partial = dest.with_name(dest.name + ".partial")
        data = b""
        while True:
            head = self.stream.read(8)
            rid, n = head[:4], struct.unpack("<I", head[4:])[0]
            if rid == b"DATA":
                data += self.stream.read(n)
                if self.conn.device.faulty("drop-transfer", remote):
                    self.conn.drop()
                    raise ConnectionError("dropped mid-transfer")
            elif rid == b"DONE":  # its word is the file's mtime, not a length
                break
            else:
                self.fail(f"unexpected {rid!r} during SEND")
                return
        if not dest.parent.is_dir():
            self.fail(f"couldn't create file: No such file or directory")
            return
        partial.write_bytes(data)
        os.chmod(partial, int(mode) & 0o7777)
        partial.replace(dest)
        self.stream.send(b"OKAY" + struct.pack("<I", 0))


REPO = Path(__file__).resolve().parents[1]
ADB = REPO / ".toolchain" / "adb" / "adb"


class PrivateAdbServer:
    """The real adb server on a free private port with its own key folder, so a user's
    own adb server and keys are never touched: :attr:`env` holds ``ADB``,
    ``ANDROID_ADB_SERVER_PORT`` and ``HOME`` for every adb call (the harness's included)."""

    def __init__(self, home: Path, adb: Path = ADB):
        if not adb.is_file():
            raise FileNotFoundError(f"no real adb at {adb}: `make toolchain` unpacks Debian's adb there")
        home.mkdir(parents=True, exist_ok=True)
        with socket.create_server(("127.0.0.1", 0)) as s:
            port = s.getsockname()[1]
        self.adb = adb
        self.env = {"ADB": str(adb), "ANDROID_ADB_SERVER_PORT": str(port), "HOME": str(home),
                    "ANDROID_SDK_HOME": str(home)}
        self.run("start-server")

    def run(self, *args: str, timeout: float = 30) -> subprocess.CompletedProcess:
        return subprocess.run([str(self.adb), *args], env={**os.environ, **self.env}, capture_output=True,
                              text=True, timeout=timeout)

    def connect(self, device: EmulatedDevice, timeout: float = 10) -> str:
        """``adb connect`` the device and wait until the server lists it (in any state; the
        client itself waits up to ~10 s for a device that never answers, so it is not waited for)."""
        connect = subprocess.Popen([str(self.adb), "connect", device.serial], env={**os.environ, **self.env},
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        try:
            while device.serial not in self.run("devices").stdout:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"adb never listed {device.serial}")
                time.sleep(0.1)
        finally:
            if connect.poll() is None:
                connect.kill()
            connect.wait()
        return device.serial

    def close(self) -> None:
        self.run("kill-server")
