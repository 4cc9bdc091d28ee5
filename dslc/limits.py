"""Documented resource limits (docs/limits.md): a hostile spec cannot hang or exhaust dslc."""

MAX_REPEAT = 10_000  # iterations of one `repeat`
MAX_NODES = 200_000  # IR nodes in one model
MAX_BLOCK_DEPTH = 64  # nested block calls
MAX_IMPORT_DEPTH = 64  # nested imports
MAX_RUN_ELEMENTS = 2**31  # elements in any one tensor the NumPy interpreter will allocate
