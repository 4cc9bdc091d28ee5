"""ONNX lowerings of the normalisations and regularisers added with issue 13."""

LOWERINGS: dict = {}
