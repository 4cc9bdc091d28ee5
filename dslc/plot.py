"""Training curves (`dslc plot RUN/`): a run's metrics.jsonl, written by the generated
training program, to a PNG of the loss and every metric against the step (matplotlib, Agg)."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path
from typing import Any

from dslc.atomic import write_atomic
from dslc.diagnostics import Diagnostic, DslcError, Span

AXIS_KEYS = ("step", "epoch")
# The prefixes of the training program's evaluation keys: `val_` on the held-out part,
# `eval_` on the training data in eval mode. A series is drawn in the panel of its base name.
PREFIXES = {"val_": "validation", "eval_": "eval mode"}


def read_metrics(run: str | Path) -> tuple[Path, list[dict[str, Any]]]:
    """The records of RUN/metrics.jsonl (RUN may also be the file itself), every line checked:
    one JSON object with a whole-number `step` (or `epoch`), numbers or null as its values."""
    path = Path(run)
    if path.is_dir():
        path = path / "metrics.jsonl"
    whole = Span(str(path), 0, 0, 0, 0)
    if not path.is_file():
        where = Path(run)
        why = ("the folder does not exist" if not where.exists() else
               "the folder has no metrics.jsonl" if where.is_dir() else "not a file")
        raise DslcError(Diagnostic(
            "E0650", f"no training metrics to plot: {why}", whole, found=str(where),
            hint="give the --out folder of `dslc train` (or of a generated train.py), which "
                 "holds metrics.jsonl once an epoch has ended"))
    try:
        text = path.read_bytes().decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DslcError(Diagnostic("E0651", "metrics.jsonl cannot be read as UTF-8 text",
                                   whole, found=str(exc)[:200])) from None
    records = []
    for number, line in enumerate(text.split("\n"), start=1):
        if line.strip():
            records.append(_record(line, Span(str(path), number, 1, number, len(line) + 1)))
    if not records:
        raise DslcError(Diagnostic(
            "E0650", "no training metrics to plot: metrics.jsonl is empty", whole,
            hint="the training program writes a line when an epoch ends; train longer"))
    return path, records


def _record(line: str, span: Span) -> dict[str, Any]:
    def bad(message: str, found: str) -> DslcError:
        return DslcError(Diagnostic(
            "E0651", f"malformed metrics.jsonl: {message}", span, found=found,
            expected='one JSON object a line, e.g. {"epoch": 1, "step": 30, "loss": 0.52}'))

    try:
        value = json.loads(line)
    except json.JSONDecodeError as exc:
        raise bad("a line is not JSON", exc.msg) from None
    if not isinstance(value, dict):
        raise bad("a line is not a JSON object", type(value).__name__)
    for key in AXIS_KEYS:
        if key in value and (not isinstance(value[key], int) or isinstance(value[key], bool)):
            raise bad(f"'{key}' is not a whole number", json.dumps(value[key])[:80])
    if not any(key in value for key in AXIS_KEYS):
        raise bad("a record has neither 'step' nor 'epoch'", ", ".join(value) or "no keys")
    for key, v in value.items():
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))):
            raise bad(f"'{key}' is not a number", json.dumps(v)[:80])
    return value


def panels(records: list[dict[str, Any]]) -> dict[str, dict[str, list[tuple[float, float]]]]:
    """Panel base name -> series name -> (x, value) points, in the order keys first appear:
    `loss`, `val_loss` and `eval_loss` share the panel `loss`, `accuracy` and `val_accuracy`
    the panel `accuracy`. x is the step (the epoch where a record has no step)."""
    out: dict[str, dict[str, list[tuple[float, float]]]] = {}
    for r in records:
        x = r["step"] if "step" in r else r["epoch"]
        for key, v in r.items():
            if key in AXIS_KEYS or v is None:
                continue
            base = key
            for prefix in PREFIXES:
                if key.startswith(prefix) and len(key) > len(prefix):
                    base = key[len(prefix):]
            out.setdefault(base, {}).setdefault(key, []).append((x, float(v)))
    # The loss first: it is what every run has.
    return dict(sorted(out.items(), key=lambda kv: kv[0] != "loss"))


def _label(key: str) -> str:
    for prefix, words in PREFIXES.items():
        if key.startswith(prefix):
            return f"{key} ({words})"
    return f"{key} (training)" if "loss" in key else key


def _epoch_length(records: list[dict[str, Any]]) -> int | None:
    """Steps per epoch when every record of a whole epoch sits at epoch * k (the generated
    program's records); None when there is no such k (then no epoch axis is drawn)."""
    pairs = [(r["epoch"], r["step"]) for r in records if "epoch" in r and "step" in r]
    if not pairs or pairs[0][0] <= 0 or pairs[0][1] % pairs[0][0]:
        return None
    k = pairs[0][1] // pairs[0][0]
    whole = [(e, s) for e, s in pairs if s == e * k]
    return k if k > 0 and len(whole) >= len(pairs) - 1 else None


def figure(records: list[dict[str, Any]], title: str):
    """The matplotlib Figure (no pyplot, so no global state): one panel per base name."""
    from matplotlib.figure import Figure

    groups = panels(records)
    if not groups:
        groups = {"loss": {}}
    cols = min(len(groups), 2)
    rows = math.ceil(len(groups) / cols)
    fig = Figure(figsize=(6.0 * cols, 3.6 * rows), dpi=100, layout="constrained")
    fig.suptitle(title)
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    k = _epoch_length(records)
    x_name = "step" if any("step" in r for r in records) else "epoch"
    for ax, (base, series) in zip(axes, groups.items()):
        for key, points in series.items():
            xs, ys = zip(*points)
            ax.plot(xs, ys, marker="o" if len(xs) <= 30 else None, markersize=3,
                    label=_label(key))
        ax.set_title(base)
        ax.set_xlabel(x_name)
        ax.grid(True, alpha=0.3)
        values = [v for points in series.values() for _, v in points if math.isfinite(v)]
        # Losses often fall by orders of magnitude: a log scale keeps the tail readable.
        if "loss" in base and values and min(values) > 0 and max(values) / min(values) > 50:
            ax.set_yscale("log")
        if series:
            ax.legend(fontsize="small")
        if k and x_name == "step":
            top = ax.secondary_xaxis("top", functions=(lambda s, k=k: s / k,
                                                       lambda e, k=k: e * k))
            top.set_xlabel("epoch")
    for ax in axes[len(groups):]:
        ax.set_visible(False)
    return fig


def png_bytes(records: list[dict[str, Any]], title: str) -> bytes:
    """The figure as PNG bytes, the same bytes for the same records: matplotlib's defaults
    (not the user's matplotlibrc) and no `Software` version stamp in the file."""
    try:
        import matplotlib
        from matplotlib.backends.backend_agg import FigureCanvasAgg
    except ImportError:
        raise DslcError(Diagnostic(
            "E0652", "plotting needs matplotlib, which is not installed",
            Span("dslc plot", 0, 0, 0, 0), hint="pip install 'dslc[plot]'")) from None
    with matplotlib.rc_context():
        matplotlib.rcdefaults()
        fig = figure(records, title)
        FigureCanvasAgg(fig)
        buf = io.BytesIO()
        fig.savefig(buf, format="png", metadata={"Software": None})
    return buf.getvalue()


def plot_run(run: str | Path, output: str | Path | None = None) -> Path:
    """Read RUN/metrics.jsonl and write the curves (default RUN/curves.png) atomically."""
    path, records = read_metrics(run)
    target = Path(output) if output is not None else path.parent / "curves.png"
    n = len(records)
    name = path.parent.resolve().name
    data = png_bytes(records, f"{name}: {n} evaluation{'' if n == 1 else 's'}")
    write_atomic(target, data)
    return target
