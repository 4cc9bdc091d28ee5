"""Documented resource limits (docs/limits.md): a hostile spec cannot hang or exhaust dslc."""

MAX_REPEAT = 10_000  # iterations of one `repeat`
MAX_NODES = 200_000  # IR nodes in one model
MAX_BLOCK_DEPTH = 64  # nested block calls
MAX_IMPORT_DEPTH = 64  # nested imports
MAX_RUN_ELEMENTS = 2**31  # elements in any one tensor the NumPy interpreter will allocate
MAX_NESTING = 100  # nested brackets ( [ and braces { in one file
MAX_DIM = 2**40  # any one fixed dimension, and the product of a declared type's fixed dims
# Op attributes that the compiler loops over (layers of an RNN, Chebyshev terms, diffusion
# hops): bounded like a repeat count, so `num_layers=2**64` is a diagnostic, not a hang.
LOOP_ATTRS = ("num_layers", "K", "hops", "num_heads", "steps")
MAX_PARAM_ELEMENTS = 2**32  # parameter and buffer elements of one model (16 GiB of f32)
