"""(in progress)"""

INDEX_OPS: tuple = ()
