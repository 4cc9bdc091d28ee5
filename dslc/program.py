"""The Python API: `dslc.load(path)` gives a Program with the same powers as the CLI."""

from __future__ import annotations

import types
from pathlib import Path
from typing import Any

import numpy as np

from dslc import interp
from dslc.elaborate import elaborate_with_warnings
from dslc.ir import Graph
from dslc.sources import load_program
from dslc.train_sections import check_file_trains


class Program:
    """A checked model: run it on NumPy, summarise it, or turn it into PyTorch.

    `graph` is the optimised IR; `source` the IR as written. Parameter files always use the
    source's keys (what `init_params` gives); folds made by optimisation are applied when
    parameters are loaded, here and in the generated module.
    """

    def __init__(self, graph: Graph, path: str, source: Graph | None = None,
                 passes: tuple[str, ...] = (), changes: list | None = None,
                 folds: list | None = None, warnings: list | None = None,
                 sources: dict[str, str] | None = None):
        self.graph = graph
        self.warnings = list(warnings or [])  # Diagnostics with severity "warning"
        # The texts of the spec files as loaded: the generated comments quote these, not
        # whatever a later load in the same process put under the same file name.
        self.sources = dict(sources or {})
        self.path = path
        self.source = source or graph
        self.passes = passes
        self.changes = list(changes or [])
        self.folds = list(folds or [])

    @property
    def name(self) -> str:
        return self.graph.model

    def init_params(self, seed: int = 0) -> dict[str, np.ndarray]:
        return interp.init_params(self.source, seed)

    def fold_params(self, params: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The optimised graph's parameters from a parameter file in the source's format (a
        file already in the optimised format is returned as it is)."""
        from dslc.passes.fold_batch_norm import fold_numpy

        out = dict(params)
        for fold in self.folds:
            if fold.kind == "drop":
                for key in fold.keys:
                    out.pop(key, None)
            elif fold.kind == "batch_norm" and f"{fold.source}.running_mean" in out:
                fold_numpy(out, fold)
        return out

    def random_inputs(self, seed: int = 0,
                      bind: dict[str, int] | None = None) -> dict[str, np.ndarray]:
        return interp.random_inputs(self.graph, seed, bind)

    def run(self, inputs: dict[str, np.ndarray], params: dict[str, np.ndarray] | None = None,
            train: bool = False, seed: int = 0,
            bind: dict[str, int] | None = None) -> dict[str, np.ndarray]:
        from dslc.passes import INFERENCE_ONLY

        if params is None:
            params = self.init_params(seed)
        if train and INFERENCE_ONLY & set(self.passes):
            # Inference folding changed what training computes: train the model as written.
            return interp.run(self.source, inputs, params, train=True, seed=seed, bindings=bind)
        if not self.folds:
            return interp.run(self.graph, inputs, params, train=train, seed=seed,
                              bindings=bind)
        folded = self.fold_params(params)
        out = interp.run(self.graph, inputs, folded, train=train, seed=seed, bindings=bind)
        for key in params:  # buffers updated in training, as torch updates a module's
            if key in folded:
                params[key] = folded[key]
        return out

    def grad(self, inputs: dict[str, np.ndarray], params: dict[str, np.ndarray] | None = None,
             loss: str | dict[str, np.ndarray] | None = None, train: bool = False,
             seed: int = 0, wrt_inputs: bool = False, bind: dict[str, int] | None = None,
             float64: bool = False, checkpoint_blocks: bool = False) -> dict[str, np.ndarray]:
        """Reverse-mode gradients on NumPy of a scalar output `loss` (default: the model's one
        scalar float output), or of the outputs against a cotangent dict {output: array}:
        {parameter key: gradient} for every trainable parameter, plus {input name: gradient}
        with `wrt_inputs`. The model as written is differentiated (no inference folds), so
        the keys are those of `init_params`. `checkpoint_blocks` keeps only each block's
        inputs and recomputes the block in the backward walk: the same gradients, bit for bit,
        in less memory (`summary()["memory"]["training_peak_checkpoint_bytes"]`)."""
        from dslc.autodiff import grad

        if params is None:
            params = self.init_params(seed)
        grads, _ = grad(self.source, inputs, params, loss, train=train, seed=seed,
                        bindings=bind, wrt_inputs=wrt_inputs, float64=float64,
                        checkpoint_blocks=checkpoint_blocks)
        return grads

    def train(self, data: str, out: str, params: dict[str, np.ndarray] | None = None,
              train: str | None = None, epochs: int | None = None, steps: int | None = None,
              seed: int | None = None, resume: str | None = None,
              stop_after_steps: int | None = None, say=print) -> dict[str, np.ndarray]:
        """Run the file's train section (`train` names one) on NumPy, as `dslc train
        --backend numpy`: from `params` (default: init_params of the run's seed), writing
        OUT/params.npz, metrics.jsonl and checkpoint.npz; returns the final parameters.
        Bad data or checkpoints raise dslc.numpy_train.TrainError (the generated program's
        codes and messages)."""
        from dslc.numpy_train import train as run_training
        from dslc.sources import load_program
        from dslc.train_sections import check_train

        spec = check_train(load_program(self.path), self.source, train)
        if params is None:
            params = self.init_params(spec.seed if seed is None else seed)
        return run_training(self.source, spec, data, out, params, epochs=epochs, steps=steps,
                            seed=seed, resume=resume, stop_after_steps=stop_after_steps,
                            say=say)

    def summary(self, bind: dict[str, int] | None = None) -> dict[str, Any]:
        from dslc.summary import summarize

        return summarize(self.graph, bind or {}, train_graph=self.source)

    def to_torch_source(self) -> str:
        from dslc.backends.torch_codegen import generate

        return generate(self.graph, folds=self.folds, sources=self.sources)

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


def load(path: str | Path, model: str | None = None, opt_level: int = 1,
         hparams: dict[str, Any] | None = None, text: str | None = None,
         passes: list[str] | None = None, after: str | None = None) -> Program:
    """Parse, elaborate, check and optimise a `.dl` file; raises DslcError with diagnostics.

    `opt_level` 0 (none), 1 (safe clean-ups, the default) or 2 (inference folding); `passes`
    names passes to run instead; `after` stops after that pass."""
    from dslc.passes import optimize, pipeline

    names = pipeline(opt_level, passes)
    prog = load_program(path, text)
    source, warnings = elaborate_with_warnings(prog, model, hparams)
    interp.check(source)
    check_file_trains(prog, source)  # the file's train sections for this model, if any
    graph, changes, folds = optimize(source, names, after)
    return Program(graph, str(path), source=source, passes=names, changes=changes, folds=folds,
                   warnings=warnings, sources=_texts_of(m.file for m in prog.modules))


def _texts_of(files) -> dict[str, str]:
    """The source text of each file as the parser read it."""
    from dslc.diagnostics import SOURCES

    return {f: SOURCES.texts[f] for f in sorted(set(files)) if f in SOURCES.texts}
