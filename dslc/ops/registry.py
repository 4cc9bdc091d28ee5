"""The op registry: the one explicit list of every op the language knows."""

from __future__ import annotations

from dslc.ops.activation import ACTIVATIONS
from dslc.ops.arith import ARITH
from dslc.ops.attention import ATTENTION_OPS
from dslc.ops.base import Op
from dslc.ops.concat import CONCAT_OPS
from dslc.ops.const import CONST
from dslc.ops.conv import CONV_OPS
from dslc.ops.conv_transpose import CONV_TRANSPOSE_OPS
from dslc.ops.dropout import DROPOUT_OPS
from dslc.ops.embedding import EMBEDDING_OPS
from dslc.ops.graph import GRAPH_OPS
from dslc.ops.index import INDEX_OPS
from dslc.ops.linear import LINEAR
from dslc.ops.loss import LOSS_OPS
from dslc.ops.math import MATH_OPS
from dslc.ops.norm import NORM_OPS
from dslc.ops.norm_layer import NORM_LAYER_OPS
from dslc.ops.pool import POOL_OPS
from dslc.ops.pool_adaptive import ADAPTIVE_POOL_OPS
from dslc.ops.recurrent import RECURRENT_OPS
from dslc.ops.reduce import REDUCE_OPS
from dslc.ops.resample import RESAMPLE_OPS
from dslc.ops.sample import SAMPLE_OPS
from dslc.ops.scan import SCAN_OPS
from dslc.ops.shape import SHAPE_OPS
from dslc.ops.spatial import SPATIAL_OPS

ALL_OPS: tuple[Op, ...] = (
    LINEAR,
    *ACTIVATIONS,
    *ARITH,
    *MATH_OPS,
    CONST,
    *SHAPE_OPS,
    *CONCAT_OPS,
    *INDEX_OPS,
    *CONV_OPS,
    *CONV_TRANSPOSE_OPS,
    *POOL_OPS,
    *ADAPTIVE_POOL_OPS,
    *NORM_OPS,
    *NORM_LAYER_OPS,
    *DROPOUT_OPS,
    *EMBEDDING_OPS,
    *SPATIAL_OPS,
    *SAMPLE_OPS,
    *RESAMPLE_OPS,
    *REDUCE_OPS,
    *SCAN_OPS,
    *RECURRENT_OPS,
    *ATTENTION_OPS,
    *GRAPH_OPS,
    *LOSS_OPS,
)

OPS: dict[str, Op] = {op.name: op for op in ALL_OPS}
assert len(OPS) == len(ALL_OPS), "two ops share a name"
