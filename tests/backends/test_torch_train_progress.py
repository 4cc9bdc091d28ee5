"""The generated training program's progress display (dslc/backends/torch_train.py, class
Progress): a bar redrawn in place on a terminal, plain lines elsewhere, chosen by
`--progress` or $DSLC_PROGRESS, with the running mean loss that metrics.jsonl records."""

from __future__ import annotations

import io
import json
import re

import pytest

from tests.backends.test_torch_train import NET, net_data, program

# 40 samples, 10 held out, batch 8: 3 steps per epoch, 2 epochs, 6 steps.
LINE = re.compile(r"^epoch (\d)/2 step (\d)/6 loss ([0-9.]+) [0-9,]+ samples/s "
                  r"ETA (\d+:\d\d:\d\d|\?)$")


def _run(tmp_path, capsys, *extra):
    mod = program(tmp_path, NET)
    data = net_data(tmp_path / "d.npz")
    run = tmp_path / "run"
    assert mod.main(["--data", str(data), "--out", str(run), *extra]) == 0
    records = [json.loads(ln) for ln in (run / "metrics.jsonl").read_text().splitlines()]
    return capsys.readouterr(), records


def test_log_lines_when_not_a_terminal(tmp_path, capsys):
    """capsys's stderr is no tty: `auto` gives plain lines, one per step here (a run of 6
    steps is shorter than 20), except the step that ends epoch 1, whose record line says it;
    the last line's running mean is the epoch's mean training loss of metrics.jsonl."""
    out, records = _run(tmp_path, capsys)
    lines = out.err.splitlines()
    parsed = [LINE.match(ln) for ln in lines]
    assert all(parsed), lines
    assert [(int(m[1]), int(m[2])) for m in parsed] == [(1, 1), (1, 2), (2, 4), (2, 5), (2, 6)]
    assert float(parsed[-1][3]) == pytest.approx(records[-1]["loss"], abs=5e-5)
    assert "\r" not in out.err and "\x1b" not in out.err
    # The epoch records still go to stdout.
    assert out.out.splitlines()[0].startswith("epoch 1 step 3 loss ")


def test_bar_redrawn_in_place_when_forced(tmp_path, capsys):
    out, records = _run(tmp_path, capsys, "--progress", "bar")
    err = out.err
    # One line: carriage returns and erase-to-end-of-line, a newline only after the last step.
    assert err.count("\n") == 1 and err.endswith("\n")
    frames = [f.removesuffix("\x1b[K") for f in err.rstrip("\n").split("\r") if f]
    assert frames[0].startswith("epoch 1/2 step 1/6 [####....................] loss ")
    last = frames[-1]
    assert last.startswith("epoch 2/2 step 6/6 [" + "#" * 24 + "] loss "), frames
    loss = float(re.search(r"loss ([0-9.]+)", last)[1])
    assert loss == pytest.approx(records[-1]["loss"], abs=5e-5)
    assert "samples/s ETA 0:00:00" in last


def test_auto_draws_the_bar_on_a_terminal(tmp_path, capsys, monkeypatch):
    class Tty(io.StringIO):
        def isatty(self):
            return True

    fake = Tty()
    monkeypatch.setattr("sys.stderr", fake)
    _run(tmp_path, capsys)
    assert "\r" in fake.getvalue() and "\x1b[K" in fake.getvalue()
    assert "[" + "#" * 24 + "]" in fake.getvalue()


@pytest.mark.parametrize("mode,bar", [("bar", True), ("log", False), ("none", None)])
def test_environment_variable_picks_the_mode(tmp_path, capsys, monkeypatch, mode, bar):
    monkeypatch.setenv("DSLC_PROGRESS", mode)
    out, _ = _run(tmp_path, capsys)
    if bar is None:
        assert out.err == ""
    else:
        assert ("\r" in out.err) == bar and "step 6/6" in out.err


def test_flag_beats_the_environment(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("DSLC_PROGRESS", "bar")
    out, _ = _run(tmp_path, capsys, "--progress", "none")
    assert out.err == ""


def test_resumed_run_counts_its_own_steps(tmp_path, capsys):
    mod = program(tmp_path, NET)
    data = net_data(tmp_path / "d.npz")
    run = tmp_path / "run"
    mod.main(["--data", str(data), "--out", str(run), "--stop-after-steps", "4"])
    capsys.readouterr()
    mod.main(["--data", str(data), "--out", str(run), "--resume", str(run),
              "--progress", "log"])
    lines = capsys.readouterr().err.splitlines()
    assert [ln.split(" loss")[0] for ln in lines] == ["epoch 2/2 step 5/6", "epoch 2/2 step 6/6"]


def test_dslc_train_passes_progress_on(tmp_path, capfd):
    from dslc.cli import main

    spec = tmp_path / "t.dl"
    spec.write_text(NET)
    data = net_data(tmp_path / "d.npz")
    assert main(["train", str(spec), "--data", str(data), "--out", str(tmp_path / "run"),
                 "--steps", "2", "--progress", "bar"]) == 0
    err = capfd.readouterr().err
    assert "\r" in err and "epoch 1/1 step 2/2 [" + "#" * 24 + "] loss " in err
