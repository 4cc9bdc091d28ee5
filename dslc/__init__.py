"""dslc: a compiler for a small declarative language of neural networks."""

from dslc.diagnostics import Diagnostic, DslcError
from dslc.program import Program, load

__all__ = ["Diagnostic", "DslcError", "Program", "load"]
__version__ = "0.1.0"
