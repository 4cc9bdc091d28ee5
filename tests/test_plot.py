"""`dslc plot RUN/` (dslc/plot.py): the curves of a run's metrics.jsonl as a PNG, the same
bytes for the same records, and a located diagnostic for every folder or file it cannot use."""

from __future__ import annotations

import json
import sys

import pytest

from dslc.cli import main
from dslc.diagnostics import DslcError
from dslc.plot import figure, panels, png_bytes, read_metrics

pytest.importorskip("matplotlib")  # the `plot` extra; the test extra installs it

RECORDS = [
    {"epoch": 1, "step": 3, "loss": 1.2, "val_loss": 1.3, "val_accuracy": 0.5},
    {"epoch": 2, "step": 6, "loss": 0.7, "val_loss": 0.9, "val_accuracy": 0.75},
    {"epoch": 3, "step": 9, "loss": 0.4, "val_loss": 0.8, "val_accuracy": 0.8},
]


def write_run(folder, records=RECORDS, text=None):
    folder.mkdir(parents=True, exist_ok=True)
    body = text if text is not None else "".join(json.dumps(r) + "\n" for r in records)
    (folder / "metrics.jsonl").write_text(body)
    return folder


def code_of(run) -> tuple[str, object]:
    with pytest.raises(DslcError) as exc:
        read_metrics(run)
    d = exc.value.diagnostics[0]
    return d.code, d


def test_panels_group_training_and_validation_series():
    got = panels(RECORDS)
    assert list(got) == ["loss", "accuracy"]
    assert got["loss"] == {"loss": [(3, 1.2), (6, 0.7), (9, 0.4)],
                           "val_loss": [(3, 1.3), (6, 0.9), (9, 0.8)]}
    assert got["accuracy"] == {"val_accuracy": [(3, 0.5), (6, 0.75), (9, 0.8)]}
    # eval_ keys join their base; records without a step use the epoch.
    assert panels([{"epoch": 4, "eval_loss": 0.5, "loss": None}]) == {
        "loss": {"eval_loss": [(4, 0.5)]}}


def test_figure_draws_every_series_with_its_points():
    fig = figure(RECORDS, "t")
    shown = [ax for ax in fig.axes if ax.get_visible() and ax.get_title()]
    assert [ax.get_title() for ax in shown] == ["loss", "accuracy"]
    lines = {ln.get_label(): (list(ln.get_xdata()), list(ln.get_ydata()))
             for ax in shown for ln in ax.get_lines()}
    assert lines == {"loss (training)": ([3, 6, 9], [1.2, 0.7, 0.4]),
                     "val_loss (validation)": ([3, 6, 9], [1.3, 0.9, 0.8]),
                     "val_accuracy (validation)": ([3, 6, 9], [0.5, 0.75, 0.8])}
    assert shown[0].get_xlabel() == "step"


def test_a_loss_falling_by_orders_of_magnitude_gets_a_log_axis():
    records = [{"step": s, "loss": 10.0 ** -s} for s in range(5)]
    assert figure(records, "t").axes[0].get_yscale() == "log"
    assert figure(RECORDS, "t").axes[0].get_yscale() == "linear"


def test_png_bytes_are_deterministic_and_ignore_the_users_style():
    import matplotlib

    a = png_bytes(RECORDS, "run")
    assert a.startswith(b"\x89PNG\r\n\x1a\n") and len(a) > 10_000
    assert b"Software" not in a and b"matplotlib" not in a.lower()
    with matplotlib.rc_context({"lines.linewidth": 6.0, "axes.facecolor": "black"}):
        assert png_bytes(RECORDS, "run") == a
    changed = [dict(r) for r in RECORDS]
    changed[1]["loss"] = 0.6
    assert png_bytes(changed, "run") != a


def test_cli_writes_curves_png_in_the_run_folder_atomically(tmp_path, capsys):
    run = write_run(tmp_path / "run")
    assert main(["plot", str(run)]) == 0
    out = run / "curves.png"
    assert capsys.readouterr().out == f"wrote {out}\n"
    data = out.read_bytes()
    assert data.startswith(b"\x89PNG")
    assert sorted(p.name for p in run.iterdir()) == ["curves.png", "metrics.jsonl"]  # no temp
    # -o elsewhere; the metrics file itself may be named; the same records, the same bytes.
    assert main(["plot", str(run / "metrics.jsonl"), "-o", str(tmp_path / "c.png")]) == 0
    assert (tmp_path / "c.png").read_bytes() == data
    import matplotlib.image

    img = matplotlib.image.imread(str(out))
    assert img.shape[1] == 1200 and img.shape[0] >= 300  # two panels side by side
    assert img[..., :3].std() > 0.05  # not a blank canvas


def test_plot_of_a_real_training_run(tmp_path):
    from tests.backends.test_torch_train import NET, net_data, program

    mod = program(tmp_path, NET.replace("epochs = 2", "epochs = 4"))
    run = tmp_path / "run"
    assert mod.main(["--data", str(net_data(tmp_path / "d.npz")), "--out", str(run),
                     "--progress", "none"]) == 0
    _, records = read_metrics(run)
    assert [r["epoch"] for r in records] == [1, 2, 3, 4]
    assert set(panels(records)) == {"loss", "accuracy"}
    assert main(["plot", str(run)]) == 0 and (run / "curves.png").stat().st_size > 10_000


def test_no_metrics(tmp_path):
    code, d = code_of(tmp_path / "missing")
    assert code == "E0650" and "does not exist" in d.message
    (tmp_path / "empty_dir").mkdir()
    code, d = code_of(tmp_path / "empty_dir")
    assert code == "E0650" and "has no metrics.jsonl" in d.message
    code, d = code_of(write_run(tmp_path / "blank", text="\n\n"))
    assert code == "E0650" and "empty" in d.message


@pytest.mark.parametrize("line,words", [
    ('{"step": 3, "loss": 0.5', "not JSON"),
    ("[1, 2]", "not a JSON object"),
    ('{"loss": 0.5}', "neither 'step' nor 'epoch'"),
    ('{"step": 3.5, "loss": 0.5}', "'step' is not a whole number"),
    ('{"step": true, "loss": 0.5}', "'step' is not a whole number"),
    ('{"step": 3, "loss": "low"}', "'loss' is not a number"),
])
def test_malformed_line_is_located(tmp_path, line, words):
    good = json.dumps(RECORDS[0])
    run = write_run(tmp_path / "run", text=f"{good}\n{line}\n")
    code, d = code_of(run)
    assert code == "E0651" and words in d.message
    assert (d.span.line, d.span.column) == (2, 1)


def test_cli_reports_without_a_traceback(tmp_path, capsys):
    run = write_run(tmp_path / "run", text='{"step": 1, "loss": 0.5}\nnot json\n')
    assert main(["plot", str(run)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"{run / 'metrics.jsonl'}:2:1: error[E0651]: malformed metrics.jsonl")
    assert "not json" in err and "Traceback" not in err
    assert not (run / "curves.png").exists()


def test_missing_matplotlib_names_the_extra(tmp_path, capsys, monkeypatch):
    run = write_run(tmp_path / "run")
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    assert main(["plot", str(run)]) == 1
    err = capsys.readouterr().err
    assert "error[E0652]: plotting needs matplotlib" in err and "dslc[plot]" in err
    assert not (run / "curves.png").exists()
