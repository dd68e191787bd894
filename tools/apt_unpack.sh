#!/usr/bin/env bash
# apt_unpack.sh DEST SUITES FILE PACKAGE...: download Debian packages with apt through a private
# sources list and index kept in DEST/apt (the system's apt set-up is not changed) and
# unpack them with dpkg-deb into DEST/root. SUITES: e.g. "bookworm bookworm-backports".
# The work happens in DEST.partial, renamed to DEST only when FILE (a path under root/) is
# there: an interrupted or failed set-up never leaves a DEST that looks complete.
set -euo pipefail
FINAL=$1 SUITES=$2 FILE=$3; shift 3
DEST="$FINAL.partial"
rm -rf "$DEST"
mkdir -p "$DEST/apt/lists/partial" "$DEST/apt/archives/partial" "$DEST/debs" "$DEST/root"
for suite in $SUITES; do
    echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian $suite main"
done > "$DEST/apt/sources.list"
APT=(-o Dir::Etc::SourceList="$DEST/apt/sources.list" -o Dir::Etc::SourceParts=-
     -o Dir::State::Lists="$DEST/apt/lists" -o Dir::Cache="$DEST/apt" -o Debug::NoLocking=1)
apt-get "${APT[@]}" -qq update
(cd "$DEST/debs" && apt-get "${APT[@]}" -qq download "$@" 2>&1 | grep -v "unsandboxed" || true)
[[ $(ls "$DEST"/debs/*.deb | wc -l) -ge $# ]] || { echo "error: apt-get download got fewer packages than the $# asked" >&2; exit 1; }
for deb in "$DEST"/debs/*.deb; do dpkg-deb -x "$deb" "$DEST/root"; done
[[ -f "$DEST/root/$FILE" ]] || { echo "error: $FILE not in the unpacked packages" >&2; exit 1; }
rm -rf "$FINAL"; mv "$DEST" "$FINAL"
