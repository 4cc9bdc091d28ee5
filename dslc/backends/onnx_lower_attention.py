"""ONNX lowerings (attention)."""

LOWERINGS = {}
