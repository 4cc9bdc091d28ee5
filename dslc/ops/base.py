"""Op definitions: the one record that holds every fact about an op (see DESIGN.md)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict

from dslc import dims as D
from dslc.types import TensorType


class Attrs(BaseModel):
    """Base of every op's attributes: frozen, strict, no unknown fields."""

    model_config = ConfigDict(frozen=True, strict=True, extra="forbid",
                              arbitrary_types_allowed=True)


class NoAttrs(Attrs):
    pass


class ShapeError(Exception):
    """Raised by a shape rule; the elaborator adds the source location.

    `arg` is the index of the tensor input at fault (None: the call itself), `attr` the name of
    the attribute at fault.
    """

    def __init__(self, message: str, expected: str | None = None, found: str | None = None,
                 arg: int | None = None, attr: str | None = None, code: str = "E0301"):
        super().__init__(message)
        self.message = message
        self.expected = expected
        self.found = found
        self.arg = arg
        self.attr = attr
        self.code = code


@dataclass(frozen=True)
class ParamSpec:
    """A parameter or buffer an op owns, named as its torch.nn module names it."""

    shape: tuple[D.Dim, ...]
    # zeros ones uniform_fan_in normal normal_zero_row:<i> constant:<v> xavier_uniform glorot
    # (glorot is torch_geometric's: U(+-sqrt(6 / (size(-2) + size(-1)))) for any rank)
    init: str = "zeros"
    fan_in: int = 1
    buffer: bool = False
    dtype: str = "f32"
    # Persistent entries are in the state_dict and the parameter file; a spec constant is not
    # (its value is part of the program, like a non-persistent torch buffer).
    persistent: bool = True


@dataclass
class RunCtx:
    """What a NumPy kernel may need beyond its inputs."""

    train: bool
    rng: np.random.Generator
    params: dict[str, np.ndarray] = field(default_factory=dict)  # this node's, by local name
    bindings: dict[str, int] = field(default_factory=dict)
    # Runs a sub-graph (a scan's cell) with the same parameters, mode and random stream.
    run_graph: Callable[..., list[np.ndarray]] | None = None
    # What a kernel keeps for its vector-Jacobian product (dropout's mask, say); the backward
    # walk hands the same dict to the op's `vjp`.
    saved: dict[str, Any] = field(default_factory=dict)
    # The run's reusable temporaries (dslc/ops/scratch.py); None outside a run.
    scratch: Any = None
    # The run's worker threads (dslc/ops/workers.py); None outside a run (one thread).
    workers: Any = None
    # For an op with `takes_epilogue`: the work of the nodes the interpreter fused after it
    # (their `epilogue`s), to apply in place to the result; None when nothing was fused.
    epilogue: Callable[[np.ndarray], None] | None = None
    # The backward walk will run this node's vjp (dslc/autodiff.py): a kernel may keep in
    # `saved` what its vjp would otherwise compute again (the LSTM's per-step gates).
    grad: bool = False
    # Set by the backward walk before it calls the vjp: per input, whether a cotangent is
    # wanted for it (False: a model input or a value no parameter feeds); None: all are. A
    # vjp may skip the work of an unwanted one (a first conv's input gradient) and return None.
    input_grads: tuple[bool, ...] | None = None

    def dim(self, d: D.Dim) -> int:
        return D.evaluate(d, self.bindings)


@dataclass
class EmitCtx:
    """What a PyTorch emitter may need: how to print dims and where its module lives."""

    module: str | None  # `self.conv1` or None for functional ops
    dim_names: dict[str, str]  # runtime symbol -> python expression (e.g. B -> x.shape[0])
    body: Any = None  # the code generator's statement emitter, for ops that emit statements

    def dim(self, d: D.Dim) -> str:
        return D.py_expr(D.as_dim(d), self.dim_names)


@dataclass(frozen=True)
class Example:
    """An instantiation the test suite runs through shape, kernel and NumPy-vs-PyTorch tests."""

    attrs: dict[str, Any]
    inputs: tuple[TensorType, ...]
    train: bool = False
    # Inputs of integer dtype are drawn in [0, int_high).
    int_high: int = 10
    # Float inputs drawn uniformly in [low, high) instead of N(0, 1) (bce takes probabilities).
    float_range: tuple[float, float] | None = None


# Emitted once into a generated file that uses it (torch has no initialiser for
# torch_geometric's glorot on tensors of rank > 2, such as GAT's attention vectors).
GLOROT_HELPER = '''
def _glorot(*shape):
    """torch_geometric's glorot: U(-a, a), a = sqrt(6 / (size(-2) + size(-1)))."""
    bound = (6.0 / (shape[-2] + shape[-1])) ** 0.5
    return torch.empty(shape).uniform_(-bound, bound)
'''


def torch_init(spec: ParamSpec) -> str:
    """A `torch` expression that makes the initial value of a parameter the generated code
    declares itself (nn.ParameterDict): the distribution interp.init_params draws from."""
    dims = [D.value(D.as_dim(d)) for d in spec.shape]
    shape = ", ".join(str(d) for d in dims)
    if spec.init == "zeros":
        return f"torch.zeros({shape})"
    if spec.init == "ones":
        return f"torch.ones({shape})"
    if spec.init == "normal":
        return f"torch.randn({shape})"
    if spec.init.startswith("constant:"):
        return f"torch.full(({shape},), {float(spec.init.split(':', 1)[1])!r})"
    if spec.init == "uniform_fan_in":  # nn.Linear's default: U(+-1/sqrt(fan_in))
        return f"torch.empty({shape}).uniform_(-{spec.fan_in} ** -0.5, {spec.fan_in} ** -0.5)"
    if spec.init == "glorot" or (spec.init == "xavier_uniform" and len(dims) == 2):
        return f"_glorot({shape})"
    raise ValueError(f"no torch initialiser for {spec.init!r}")


def no_params(attrs, ins) -> dict[str, ParamSpec]:
    return {}


def zero_macs(attrs, ins, outs) -> D.Dim:
    return D.const(0)


def no_module(attrs, ins) -> str | None:
    return None


def no_regions(attrs) -> tuple[Any, ...]:
    return ()


@dataclass(frozen=True)
class RegionView:
    """How a diagram draws a node that owns a region (dslc/render.py): the region in a cluster,
    its inputs fed from the node's inputs in order, some region outputs looping back to region
    inputs between runs, and the node collecting the others."""

    region: Any  # dslc.ir.Graph
    keyword: str  # the cluster's title: the keyword in bold, then `title` (plain text)
    title: str
    cluster: str  # DOT id stem: clusters are cluster_<stem><node id>
    roles: tuple[str, ...]  # per region input: "step" (sliced per run, shown name[t]) or other
    loops: tuple[tuple[tuple[int, int], int], ...]  # (region output ref, region input node id)
    collected: tuple[tuple[int, int], ...]  # region output refs the node gathers
    steps: Any  # D.Dim: how many times the region runs
    collector: str = "collect"  # the node's own label inside the cluster


@dataclass(frozen=True)
class Op:
    name: str  # the DSL keyword and the IR op name
    family: str  # render colour group: dense conv pool act norm shape arith reg embed sample const
    doc: str
    attrs: type[Attrs]
    shape: Callable[[Any, list[TensorType]], list[TensorType]]
    numpy: Callable[[Any, list[np.ndarray], RunCtx], list[np.ndarray]]
    torch_call: Callable[[Any, list[str], EmitCtx, list[TensorType]], str]
    examples: tuple[Example, ...]
    positional: tuple[str, ...] = ()
    min_inputs: int = 1
    max_inputs: int | None = 1
    params: Callable[[Any, list[TensorType]], dict[str, ParamSpec]] = no_params
    macs: Callable[[Any, list[TensorType], list[TensorType]], D.Dim] = zero_macs
    torch_module: Callable[[Any, list[TensorType]], str | None] = no_module
    label: Callable[[Any], str] = lambda attrs: ""
    module_prefix: str = ""  # `conv` gives layer names conv1, conv2, ...
    n_outputs: Callable[[Any], int] = lambda attrs: 1
    random: bool = False  # draws random numbers (train-only dropout, sampling)
    # In eval the op returns its first input unchanged (dropout, drop path, training noise):
    # the -O2 `inference` pass replaces it by that input.
    train_only: bool = False
    # Ops whose PyTorch form is statements, not one expression (a scan's loop):
    # (attrs, args, ctx, in_types, target variables) -> lines.
    torch_stmts: Callable[..., list[str]] | None = None
    # The vector-Jacobian product (reverse-mode differentiation on NumPy):
    # (attrs, inputs, outputs, output cotangents (None: no gradient reaches that output), ctx)
    # -> (a cotangent per input (None where none flows: integer inputs, masks),
    #     {local parameter name: gradient}). ctx holds the node's params and what the kernel
    # saved. None: the op has no gradient (argmax, integer ops, masks); `no_grad` says why.
    vjp: Callable[..., tuple[list[np.ndarray | None], dict[str, np.ndarray]]] | None = None
    # (attrs, input types, output types) -> elements (of the first output's dtype) the kernel
    # keeps in ctx.saved when the backward walk runs it (ctx.grad), beyond its inputs and
    # outputs; `dslc summary`'s training peak counts them (dslc/grad_memory.py).
    vjp_keeps: Callable[[Any, list[TensorType], list[TensorType]], D.Dim] | None = None
    no_grad: str = ""
    # Fusion in eval runs (dslc/interp.py): an op with an `epilogue` keeps its input's shape
    # and dtype and computes each element from that element and its channel alone (batch
    # norm's eval form, relu6). (attrs, ctx, dtype) -> a function that applies the op in place
    # to a channels-last block [..., C] of its input, or None where it cannot (training, a
    # dtype it computes in a wider one). When such an op is the only reader of the output of
    # an op that `takes_epilogue` (the convs), the producer's kernel applies it to its result
    # block by block, while in cache, and the op's own kernel does not run. Results are the
    # same bits as running the two kernels one after the other.
    epilogue: Callable[[Any, RunCtx, np.dtype], Callable[[np.ndarray], None] | None] | None = None
    takes_epilogue: bool = False
    # The result is a new tensor (never a view or alias of an input, a parameter or a buffer)
    # that torch's backward of the op does not read (conv, linear, batch norm and add read
    # their inputs; relu, sigmoid, tanh and softmax keep their result for the gradient): the
    # generated code may let the value's only reader overwrite it in place.
    result_overwritable: bool = False
    # How the op overwrites its first input with its result in PyTorch, used where that input
    # is an overwritable result read by nothing else: an expression like torch_call's
    # (`F.relu(x, inplace=True)`), or Python's augmented assignment (`+=`: `a += b`, the result
    # keeps a's variable; used only with two tensor operands and a result of the first's type).
    torch_inplace: Callable[[Any, list[str], EmitCtx, list[TensorType]], str] | None = None
    inplace_operator: str | None = None
    # ---- traits: what passes and back ends ask the op instead of matching its name ----
    # The sub-graphs (regions) the node owns and runs (a scan's cell): every stage reaches
    # them through dslc/regions.py. `region_runs` says how often each runs (its MACs multiply).
    regions: Callable[[Any], tuple[Any, ...]] = no_regions
    region_runs: Callable[[Any, list[TensorType]], D.Dim] = lambda attrs, ins: D.const(1)
    # How a diagram draws it: (attrs, input types, output types) -> RegionView.
    region_view: Callable[..., RegionView] | None = None
    # How `dslc ir` prints the attrs when the field list does not fit (a scan's cell graph).
    ir_attrs: Callable[[Any], str] | None = None
    # Its value is fixed when compiling (const): a buffer, not an activation.
    constant: bool = False
    # Computes nothing for these types (identity; a reshape to the same shape): (attrs, input
    # types, output types) -> the reason, for the `identity` pass's change list, or None.
    identity_when: Callable[[Any, list[TensorType], list[TensorType]], str | None] | None = None
    # Reorders its input's axes (transpose, permute): (attrs, rank) -> the permutation.
    axis_permutation: Callable[[Any, int], list[int]] | None = None
    # A view: the input's elements in the same row-major order, only reshaped (reshape,
    # flatten). `absorbs_view`: its result is decided by its attrs and its input's elements
    # alone (reshape), so it may read through a view before it.
    view: bool = False
    absorbs_view: bool = False
    # A per-channel affine normalisation that may fold into the weight and bias of the layer
    # before it for inference (batch norm with affine weights and running statistics).
    folds_into_layer: Callable[[Any], bool] | None = None
    # A layer whose weight's axis 0 and bias are per output channel on axis 1 of its output,
    # so such a normalisation folds into it: (attrs, output types) -> whether it may here.
    absorbs_norm: Callable[[Any, list[TensorType]], bool] | None = None
    # Its speed depends on the memory layout of 4-d tensors (2-d convolution): the -O2
    # `channels_last` pass keeps such a model's tensors channels last.
    layout_sensitive: bool = False
    # A loss whose target may hold class indices: (attrs, input types) -> (target input,
    # number of classes, ignore_index), or None when these inputs take no class indices.
    class_target: Callable[[Any, list[TensorType]], tuple[int, D.Dim, int] | None] | None = None

    @property
    def has_params(self) -> bool:
        return self.params is not no_params


def concrete(d: D.Dim, what: str) -> int:
    """A dim that must be a number (a weight shape, say); raise a ShapeError naming `what`."""
    v = D.value(D.as_dim(d))
    if v is None:
        raise ShapeError(f"{what} must be a fixed number, but depends on runtime dims "
                         f"{', '.join(D.free_names(d))}", found=D.fmt(d), code="E0304")
    return v


def need_rank(t: TensorType, ranks, arg: int = 0, what: str = "input") -> None:
    if t.rank not in ranks:
        want = " or ".join(str(r) for r in ranks)
        raise ShapeError(f"{what} must have rank {want}", expected=f"rank {want}",
                         found=f"{t} (rank {t.rank})", arg=arg)


def need_float(t: TensorType, arg: int = 0) -> None:
    if not t.is_float:
        raise ShapeError("expects a floating-point tensor", expected="f16, bf16, f32 or f64",
                         found=str(t), arg=arg, code="E0302")


def norm_axis(axis: int, rank: int, attr: str = "dim") -> int:
    if not -rank <= axis < rank:
        raise ShapeError(f"{attr} {axis} is out of range for a rank-{rank} tensor",
                         expected=f"{-rank} <= {attr} < {rank}", found=str(axis), attr=attr)
    return axis % rank


def insert_axis(dim: int, rank: int, what: str) -> int:
    """Position of a new axis in a rank-`rank` tensor (stack, unsqueeze): -rank-1 <= dim <= rank."""
    if not -rank - 1 <= dim <= rank:
        raise ShapeError(f"dim {dim} is out of range for {what} rank-{rank} tensors",
                         expected=f"{-rank - 1} <= dim <= {rank}", found=str(dim), attr="dim")
    return dim + rank + 1 if dim < 0 else dim


def pair(v) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else tuple(v)


def fmt_value(v) -> str:
    """Python literal for an attribute in generated code."""
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, tuple):
        return "(" + ", ".join(fmt_value(x) for x in v) + ("," if len(v) == 1 else "") + ")"
    return repr(v)
