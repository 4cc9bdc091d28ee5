"""ONNX import: the train-only ops (dropout, drop_path, edge_dropout, ...) that `dslc export`
wrote as their inference function, and a recurrent stack's dropout, read back with their rates
from the model property `dslc.train_attrs` (ONNX node name -> {"op": ..., attribute: value};
docs/onnx.md)."""

from __future__ import annotations

import json

from dslc.onnx_import_core import Importer, ImportProblem

PROPERTY = "dslc.train_attrs"
# The ops the property may name, and the ONNX node each exports as.
IDENTITY_OPS = frozenset({"dropout", "dropout2d", "alpha_dropout", "drop_path",
                          "gaussian_noise"})


def _records(imp: Importer) -> dict:
    cached = imp.__dict__.get("train_attrs")
    if cached is not None:
        return cached
    text = next((p.value for p in imp.model.metadata_props if p.key == PROPERTY), "")
    try:
        found = json.loads(text) if text else {}
    except ValueError:
        found = None
    if not isinstance(found, dict):
        # a hand-edited property: the rates are lost, as in a file without it
        found = {}
    imp.__dict__["train_attrs"] = found
    return found


def train_call(imp: Importer, node, ops: frozenset[str]) -> str | None:
    """The spec call (`dropout(p=0.3)`, `drop_path(p=0.1)`) for ONNX `node` when the file
    records it as one of `ops`; None when it records nothing for the node."""
    rec = _records(imp).get(node.name)
    if not isinstance(rec, dict) or rec.get("op") not in ops:
        return None
    from dslc.ops.registry import OPS

    op = OPS[rec["op"]]
    given = {k: v for k, v in rec.items() if k != "op"}
    try:
        attrs = op.attrs(**given)
    except (TypeError, ValueError) as exc:  # pydantic's ValidationError is a ValueError
        raise ImportProblem(f"{PROPERTY} gives {rec['op']} attributes it does not take "
                            f"({str(exc).splitlines()[0][:120]})") from None
    p, std = getattr(attrs, "p", 0.0), getattr(attrs, "std", 0.0)
    if not (0.0 <= p <= 1.0 and std >= 0.0):  # what the ops' shape rules refuse
        raise ImportProblem(f"{PROPERTY} gives {rec['op']} attributes it does not take "
                            f"(a rate outside [0, 1] or a negative std: {given})")
    args = []
    for name, fld in type(attrs).model_fields.items():
        value = getattr(attrs, name)
        if not fld.is_required() and value == fld.default:
            continue  # the op's default: as a spec would leave it out
        args.append(f"{name}={_literal(value)}")
    return f"{rec['op']}({', '.join(args)})" if args else rec["op"]


def train_value(imp: Importer, node, op: str, key: str):
    """The training-only attribute `key` of op `op` (an LSTM's `dropout`) that the file
    records for ONNX `node`, or None."""
    rec = _records(imp).get(node.name)
    if not isinstance(rec, dict) or rec.get("op") != op:
        return None
    value = rec.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        return None  # a hand-edited record: as in a file without it
    return value


def _literal(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, float):
        text = f"{value:.15g}"  # 0.075, not 0.07500000000000001
        return text if "." in text or "e" in text else f"{text}.0"  # 1.0 stays a float
    return repr(value)
