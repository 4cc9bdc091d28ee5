"""(in progress)"""

CONCAT_OPS: tuple = ()
