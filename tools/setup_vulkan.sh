#!/usr/bin/env bash
# Software Vulkan for LiteRT's GPU accelerator, unpacked into a folder of the repo
# (default .toolchain/vulkan): Mesa 25 lavapipe from Debian bookworm-backports (Debian 12's
# own Mesa 22 lavapipe lacks the dynamic indexing Dawn requires), its libdrm, and the
# Vulkan loader, through tools/apt_unpack.sh (private apt index; nothing system-wide).
# Writes DEST/env.sh (VK_ICD_FILENAMES, LD_LIBRARY_PATH) for the accelerator checks.
set -euo pipefail
DEST=$(realpath -m "${1:-.toolchain/vulkan}")
# lavapipe and the libraries it loads that a minimal Debian 12 lacks (libc, libstdc++ and zlib
# are always there); the bpo libdrm pair because Mesa 25 needs libdrm >= 2.4.121.
PACKAGES=(mesa-vulkan-drivers=25.0.7-2~bpo12+1 libdrm2=2.4.123-1~bpo12+1 libdrm-amdgpu1=2.4.123-1~bpo12+1
          libvulkan1 libllvm15 libedit2 libbsd0 libmd0 libtinfo6 libxml2 libicu72 liblzma5 libz3-4
          libelf1 libffi8 libexpat1 libzstd1 libxcb1 libxau6 libxdmcp6 libxcb-dri3-0 libxcb-present0
          libxcb-shm0 libxcb-sync1 libxcb-xfixes0 libxcb-randr0 libxshmfence1 libx11-xcb1
          libwayland-client0)
if [[ -f "$DEST/env.sh" ]]; then echo "software Vulkan already in $DEST"; exit 0; fi
"$(dirname "$0")/apt_unpack.sh" "$DEST" "bookworm bookworm-backports" usr/lib/x86_64-linux-gnu/libvulkan_lvp.so \
    "${PACKAGES[@]}"
lib="$DEST/root/usr/lib/x86_64-linux-gnu"
cat > "$DEST/lvp_icd.json" <<ICD
{"file_format_version": "1.0.0", "ICD": {"library_path": "$lib/libvulkan_lvp.so", "api_version": "1.3.0"}}
ICD
cat > "$DEST/env.sh" <<ENV
export VK_ICD_FILENAMES="$DEST/lvp_icd.json"
export LD_LIBRARY_PATH="$lib\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}"
ENV
echo "software Vulkan (Mesa lavapipe) in $DEST"
