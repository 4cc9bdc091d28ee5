"""Documented resource limits (docs/limits.md): a hostile spec cannot hang or exhaust dslc."""

MAX_REPEAT = 1_000  # iterations of one `repeat`
# IR nodes in one model: elaboration runs sympy shape rules at about 1,000 nodes a second, so
# this keeps the worst case near twenty seconds (the fuzzer found 10,000 GIN layers hanging).
MAX_NODES = 20_000
MAX_BLOCK_DEPTH = 64  # nested block calls
MAX_IMPORT_DEPTH = 64  # nested imports
MAX_RUN_ELEMENTS = 2**28  # elements in any one tensor `run` allocates (1 GiB of f32)
MAX_NESTING = 100  # nested brackets ( [ and braces { in one file
MAX_DIM = 2**40  # any one fixed dimension, and the product of a declared type's fixed dims
# Op attributes that the compiler loops over (layers of an RNN, Chebyshev terms, diffusion
# hops): bounded like a repeat count, so `num_layers=2**64` is a diagnostic, not a hang.
LOOP_ATTRS = ("num_layers", "K", "hops", "num_heads", "steps")
MAX_PARAM_ELEMENTS = 2**32  # parameter and buffer elements of one model (16 GiB of f32)
