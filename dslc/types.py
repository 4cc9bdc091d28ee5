"""Tensor types: a dtype and a symbolic shape, as the checker assigns them to every IR value."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dslc import dims as D

# DSL dtype name -> (numpy dtype, torch dtype name)
DTYPES: dict[str, tuple[str, str]] = {
    "f16": ("float16", "torch.float16"),
    "bf16": ("float32", "torch.bfloat16"),  # NumPy has no bfloat16: computed in float32
    "f32": ("float32", "torch.float32"),
    "f64": ("float64", "torch.float64"),
    "i32": ("int32", "torch.int32"),
    "i64": ("int64", "torch.int64"),
    "bool": ("bool", "torch.bool"),
}
FLOAT_DTYPES = ("f16", "bf16", "f32", "f64")
INT_DTYPES = ("i32", "i64")


@dataclass(frozen=True)
class TensorType:
    dtype: str
    shape: tuple[D.Dim, ...]

    @property
    def rank(self) -> int:
        return len(self.shape)

    @property
    def is_float(self) -> bool:
        return self.dtype in FLOAT_DTYPES

    def __str__(self) -> str:
        return f"{self.dtype}{D.fmt_shape(self.shape)}"

    def with_shape(self, shape) -> TensorType:
        return TensorType(self.dtype, tuple(D.as_dim(d) for d in shape))

    def numel(self) -> D.Dim:
        return D.product(self.shape)


def tensor(dtype: str, *shape) -> TensorType:
    return TensorType(dtype, tuple(D.as_dim(d) for d in shape))


def numpy_dtype(dtype: str) -> np.dtype:
    return np.dtype(DTYPES[dtype][0])


def dtype_of_array(arr: np.ndarray) -> str | None:
    for name, (np_name, _) in DTYPES.items():
        if name == "bf16":
            continue
        if arr.dtype == np.dtype(np_name):
            return name
    return None
