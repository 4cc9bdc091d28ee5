"""The Python API: `dslc.load(path)` gives a Program with the same powers as the CLI."""

from __future__ import annotations

import types
from pathlib import Path
from typing import Any

import numpy as np

from dslc import interp
from dslc.elaborate import elaborate, load_program
from dslc.ir import Graph


class Program:
    """A checked model: run it on NumPy, summarise it, or turn it into PyTorch."""

    def __init__(self, graph: Graph, path: str):
        self.graph = graph
        self.path = path

    @property
    def name(self) -> str:
        return self.graph.model

    def init_params(self, seed: int = 0) -> dict[str, np.ndarray]:
        return interp.init_params(self.graph, seed)

    def random_inputs(self, seed: int = 0,
                      bind: dict[str, int] | None = None) -> dict[str, np.ndarray]:
        return interp.random_inputs(self.graph, seed, bind)

    def run(self, inputs: dict[str, np.ndarray], params: dict[str, np.ndarray] | None = None,
            train: bool = False, seed: int = 0,
            bind: dict[str, int] | None = None) -> dict[str, np.ndarray]:
        if params is None:
            params = self.init_params(seed)
        return interp.run(self.graph, inputs, params, train=train, seed=seed, bindings=bind)

    def summary(self, bind: dict[str, int] | None = None) -> dict[str, Any]:
        from dslc.summary import summarize

        return summarize(self.graph, bind or {})

    def to_torch_source(self) -> str:
        from dslc.backends.torch_codegen import generate

        return generate(self.graph)

    def torch_arg_names(self) -> dict[str, str]:
        """Spec input name -> keyword argument of the generated `forward` (they differ only
        for names Python reserves, e.g. `lambda` -> `lambda_`)."""
        from dslc.backends.torch_codegen import input_arg_names

        return input_arg_names(self.graph)

    def to_torch(self) -> type:
        """The generated module class (imports torch)."""
        from dslc.backends.torch_codegen import class_name

        src = self.to_torch_source()
        mod = types.ModuleType(f"dslc_generated_{class_name(self.name).lower()}")
        code = compile(src, f"<dslc:{Path(self.path).name}:{self.name}>", "exec")
        exec(code, mod.__dict__)  # noqa: S102 - our own generated source
        return getattr(mod, class_name(self.name))

    def to_dot(self, expand: bool = False) -> str:
        from dslc.render import to_dot

        return to_dot(self.graph, expand=expand)


def load(path: str | Path, model: str | None = None, hparams: dict[str, Any] | None = None,
         text: str | None = None) -> Program:
    """Parse, elaborate and check a `.dl` file; raises DslcError with diagnostics."""
    prog = load_program(path, text)
    graph = elaborate(prog, model, hparams)
    interp.check(graph)
    return Program(graph, str(path))
