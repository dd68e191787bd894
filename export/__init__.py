"""ONNX/TFLite export, quantisation and parity (issue 6)."""
