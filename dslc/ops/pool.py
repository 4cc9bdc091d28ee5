"""(in progress)"""

POOL_OPS: tuple = ()
