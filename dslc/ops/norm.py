"""(in progress)"""

NORM_OPS: tuple = ()
