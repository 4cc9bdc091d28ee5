"""ONNX import: repeated chains of statements -> a `block` and a `repeat` (placeholder)."""

from __future__ import annotations


def find_repeats(imp, stmts, out_vars, defined):
    return [], stmts
