#!/usr/bin/env bash
# Qualcomm QNN host libraries for LiteRT's AOT compiler plugin, into a folder of the repo
# (default .toolchain/qnn). LiteRT's own ai-edge-litert-sdk-qualcomm package downloads the
# QNN SDK from Qualcomm while it installs (it fails offline and pip still reports success);
# the PyPI wheel onnxruntime-qnn 2.7.0 bundles the same host libraries (QNN 2.40), so they
# are taken from it. The LiteRT 2.3 plugin also loads libQnnHtpPrepare.so (the wheel names
# it libHtpPrepare.so) and a libQnnLpai.so it uses no symbol of (an empty library).
set -euo pipefail
PIP=${PIP:-pip}
DEST=$(realpath -m "${1:-.toolchain/qnn}")
WHEEL_SPEC=onnxruntime-qnn==2.7.0
if [[ -f "$DEST/lib/libQnnHtp.so" ]]; then echo "QNN host libraries already in $DEST"; exit 0; fi
work="$DEST.partial"
rm -rf "$work"; mkdir -p "$work/wheel" "$work/lib"
"$PIP" download "$WHEEL_SPEC" --no-deps --only-binary=:all: -d "$work/wheel" -q
python3 - "$work" <<'PY'
import sys, zipfile, pathlib
work = pathlib.Path(sys.argv[1])
wheel = next((work / "wheel").glob("onnxruntime_qnn-*.whl"))
with zipfile.ZipFile(wheel) as z:
    for name in z.namelist():
        if name.startswith(("onnxruntime_qnn/libQnn", "onnxruntime_qnn/libHtp", "onnxruntime_qnn.libs/")) and ".so" in name:
            (work / "lib" / pathlib.Path(name).name).write_bytes(z.read(name))
PY
ln -s libHtpPrepare.so "$work/lib/libQnnHtpPrepare.so"
gcc -shared -o "$work/lib/libQnnLpai.so" -x c /dev/null
rm -rf "$work/wheel" "$DEST"; mv "$work" "$DEST"
echo "QNN host libraries ($WHEEL_SPEC) in $DEST/lib"
