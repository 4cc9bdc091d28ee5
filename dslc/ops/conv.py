"""(in progress)"""

CONV_OPS: tuple = ()
