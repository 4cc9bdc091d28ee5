"""(in progress)"""

EMBEDDING_OPS: tuple = ()
