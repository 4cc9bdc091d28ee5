"""(in progress)"""

SPATIAL_OPS: tuple = ()
