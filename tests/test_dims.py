"""Symbolic dims: the conv formula, three-valued equality, printing to Python."""

import sympy

from dslc import dims as D


def test_conv_formula_matches_notes():
    # (w + 2P - F)/S + 1 from note 003, for many cases
    for w in (5, 7, 28, 32, 227):
        for k in (1, 3, 5, 11):
            for s in (1, 2, 4):
                for p in (0, 1, 2):
                    if w + 2 * p < k:
                        continue
                    assert int(D.conv_out(D.const(w), k, s, p, 1)) == (w + 2 * p - k) // s + 1


def test_symbolic_equality_three_valued():
    B, T = D.symbol("B"), D.symbol("T")
    assert D.equal(B * 2, B + B) is True
    assert D.equal(B, B + 1) is False
    assert D.equal(B, T) is None


def test_py_expr_prints_integer_arithmetic():
    W = D.symbol("W")
    e = D.conv_out(W, 3, 2, 1, 1)
    code = D.py_expr(e, {"W": "w"})
    for w in range(1, 40):
        assert eval(code, {"w": w}) == int(e.subs(W, w))
    assert D.fmt(sympy.Integer(3)) == "3"
