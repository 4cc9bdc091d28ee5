"""Tests of dslc/ops/workers.py: a run's kernel threads."""

from __future__ import annotations

import threading

import pytest

from dslc.ops import workers as workers_module
from dslc.ops.workers import MAX_THREADS, Workers, default_threads


def test_every_piece_runs_once_in_contiguous_runs():
    w = Workers(3)
    runs = []
    lock = threading.Lock()

    def fn(part):
        with lock:
            runs.append((threading.get_ident(), list(part)))
    try:
        w.run(fn, list(range(10)))
    finally:
        w.close()
    assert sorted(p for _, part in runs for p in part) == list(range(10))
    assert len(runs) == 3
    for _, part in runs:  # each run is a contiguous range
        assert part == list(range(part[0], part[0] + len(part)))
    assert threading.get_ident() in {t for t, _ in runs}  # the caller takes a share


def test_one_thread_runs_everything_on_the_caller_and_starts_none():
    before = threading.active_count()
    w = Workers(1)
    seen = []
    w.run(lambda part: seen.append((threading.get_ident(), list(part))), [1, 2, 3])
    assert seen == [(threading.get_ident(), [1, 2, 3])]
    assert threading.active_count() == before


def test_an_exception_in_a_worker_is_raised_after_all_runs_finished():
    w = Workers(2)
    done = []

    def fn(part):
        if part[0] >= 2:
            raise ValueError("boom")
        done.append(part[0])
    try:
        with pytest.raises(ValueError, match="boom"):
            w.run(fn, [0, 1, 2, 3])
    finally:
        w.close()
    assert done == [0]


def test_close_joins_the_threads():
    before = threading.active_count()
    w = Workers(4)
    w.run(lambda part: None, list(range(8)))
    assert threading.active_count() > before  # started on first use
    w.close()
    assert threading.active_count() == before


def test_split_keeps_small_work_on_one_thread():
    w = Workers(4)
    assert w.split(workers_module.MIN_SPLIT - 1) == 1
    assert w.split(2 * workers_module.MIN_SPLIT) == 2
    assert w.split(100 * workers_module.MIN_SPLIT) == 4


@pytest.mark.parametrize("env,want", [
    ({"OPENBLAS_NUM_THREADS": "3"}, 3),
    ({"OMP_NUM_THREADS": "2"}, 2),
    ({"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "4"}, 1),  # OpenBLAS's own first
    ({"OPENBLAS_NUM_THREADS": "500"}, MAX_THREADS),
])
def test_default_threads_follow_blas_settings(monkeypatch, env, want):
    monkeypatch.delenv("OPENBLAS_NUM_THREADS", raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    assert default_threads() == want


def test_default_threads_without_settings_is_the_usable_cores(monkeypatch):
    monkeypatch.delenv("OPENBLAS_NUM_THREADS", raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(workers_module.os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    assert default_threads() == 2
