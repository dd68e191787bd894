"""adb device layer for on-phone latency and parity (issue 8)."""
