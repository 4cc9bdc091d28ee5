"""ONNX lowerings (graph)."""

LOWERINGS = {}
