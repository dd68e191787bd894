#!/usr/bin/env bash
# The real adb (client and server, Debian 12's adb 29.0.6) unpacked into a folder of the repo
# (default .toolchain/adb) with the Android libraries it links, through tools/apt_unpack.sh
# (private apt index; nothing system-wide). DEST/adb runs it with those libraries.
set -euo pipefail
DEST=$(realpath -m "${1:-.toolchain/adb}")
PACKAGES=(adb android-libbase android-libboringssl android-libcutils android-liblog libusb-1.0-0 libudev1)
if [[ -x "$DEST/adb" ]]; then echo "adb already in $DEST"; exit 0; fi
"$(dirname "$0")/apt_unpack.sh" "$DEST" "bookworm" usr/lib/android-sdk/platform-tools/adb "${PACKAGES[@]}"
root="$DEST/root"
cat > "$DEST/adb.partial" <<SH
#!/bin/sh
LD_LIBRARY_PATH="$root/usr/lib/x86_64-linux-gnu/android:$root/usr/lib/x86_64-linux-gnu\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}" \\
    exec "$root/usr/lib/android-sdk/platform-tools/adb" "\$@"
SH
chmod +x "$DEST/adb.partial"; mv "$DEST/adb.partial" "$DEST/adb"
"$DEST/adb" version | head -2
