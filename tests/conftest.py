"""Shared pytest fixtures for the whole suite (keep generic; add fixtures below as needed).

Golden files live under tests/golden/<area>/. Regenerate them with either
`pytest --regen-golden` or `DSLC_REGEN_GOLDEN=1 pytest`, then review the diff.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

GOLDEN_DIR = Path(__file__).parent / "golden"


def pytest_addoption(parser):
    parser.addoption("--regen-golden", action="store_true", default=False,
                     help="rewrite golden files under tests/golden from the current output")


def _regen(config) -> bool:
    return bool(config.getoption("--regen-golden")) or \
        os.environ.get("DSLC_REGEN_GOLDEN", "") not in ("", "0")


@pytest.fixture
def golden(request):
    """`golden("render/mlp.dot", text)` compares text with the stored file (or rewrites it
    when regenerating); a missing golden file fails with the command that creates it."""
    regen = _regen(request.config)

    def check(rel: str, actual: str) -> None:
        path = GOLDEN_DIR / rel
        if regen:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(actual.encode("utf-8"))
            return
        if not path.exists():
            pytest.fail(f"golden file tests/golden/{rel} is missing; create it with "
                        "`pytest --regen-golden` (or DSLC_REGEN_GOLDEN=1) and review it")
        expected = path.read_bytes().decode("utf-8")
        assert actual == expected, (
            f"output differs from tests/golden/{rel}; if the change is intended, "
            "regenerate with `pytest --regen-golden` and review the diff")

    return check
