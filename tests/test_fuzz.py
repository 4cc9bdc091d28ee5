"""A fixed-seed sample of bench/fuzz.py: generated and mutated specs through every stage, with
no uncaught exception, hang or unparsable generated code (the full run is on demand)."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

import fuzz  # noqa: E402

SEED = 20240
COUNT = 150


def test_fixed_seed_sample_runs_clean():
    res = fuzz.fuzz(COUNT, SEED, budget=30.0)
    assert res["cases"] == COUNT
    assert set(res["kinds"]) == {"mutate", "grammar", "limits"}
    assert res["failures"] == 0, res["examples"][:3]


def test_cases_are_reproducible_from_seed_and_index():
    a = fuzz.make_case(SEED, 17)
    b = fuzz.make_case(SEED, 17)
    assert a.text == b.text and a.kind == b.kind
    assert fuzz.make_case(SEED, 18).text != a.text


def test_the_harness_reports_a_crash_and_a_hang(monkeypatch):
    """The fuzzer's own checks fail on a broken compiler: an exception, a slow stage."""
    import time

    import dslc

    case = fuzz.Case(0, "grammar", str(ROOT / "specs" / "x.dl"),
                     "model m { input x: f32[B, 4]\n output y = x -> relu }\n")
    assert fuzz.run_case(case) is None
    monkeypatch.setattr(dslc.Program, "to_torch_source", lambda self: "def (:\n")
    fail = fuzz.run_case(case)
    assert fail and fail["sig"] == "compile:unparsable"
    monkeypatch.setattr(dslc.Program, "summary", lambda self, bind=None: 1 / 0)
    fail = fuzz.run_case(case)
    assert fail and fail["stage"] == "summary" and "ZeroDivisionError" in fail["error"]
    monkeypatch.setattr(dslc.Program, "summary", lambda self, bind=None: time.sleep(5))
    fail = fuzz.run_case(case, budget=0.5)
    assert fail and fail["error"].startswith("hang")
