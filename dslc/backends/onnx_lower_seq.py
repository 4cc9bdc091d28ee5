"""ONNX lowerings (seq)."""

LOWERINGS = {}
