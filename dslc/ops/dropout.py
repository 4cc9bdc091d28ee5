"""(in progress)"""

DROPOUT_OPS: tuple = ()
