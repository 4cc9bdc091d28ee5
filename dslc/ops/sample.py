"""(in progress)"""

SAMPLE_OPS: tuple = ()
