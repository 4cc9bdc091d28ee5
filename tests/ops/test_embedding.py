"""Tests of dslc/ops/embedding.py: embedding against torch.nn.Embedding."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import dslc
from dslc.diagnostics import DslcError
from dslc.ops.embedding import EmbeddingAttrs, padding_row
from tests.helpers import assert_close, compare_numpy_torch


def load(body: str):
    return dslc.load("t.dl", text="model t {\n" + body + "\n}\n")


def diag(body: str):
    with pytest.raises(DslcError) as exc:
        load(body)
    return exc.value.diagnostics[0]


@pytest.mark.parametrize("dtype,shape,pad", [
    ("i64", (2, 5), None),
    ("i32", (7,), None),
    ("i64", (3, 4, 2), 0),
    ("i64", (6, 3), -1),
])
def test_embedding_matches_torch(dtype, shape, pad):
    dims = ", ".join(str(s) for s in shape)
    kw = "" if pad is None else f", padding_idx={pad}"
    prog = load(f"input ids: {dtype}[{dims}]\noutput y = ids -> embedding(9, 4{kw})")
    want_mod = "nn.Embedding(9, 4" + ("" if pad is None else f", padding_idx={pad}") + ")"
    assert f"self.emb1 = {want_mod}" in prog.to_torch_source()
    params = prog.init_params(seed=2)
    assert list(params) == ["emb1.weight"] and params["emb1.weight"].shape == (9, 4)
    ref = torch.nn.Embedding(9, 4, padding_idx=pad)
    ref.load_state_dict({"weight": torch.from_numpy(params["emb1.weight"].copy())})
    rng = np.random.default_rng(4)
    ids = rng.integers(0, 9, size=shape).astype(np.int64 if dtype == "i64" else np.int32)
    if pad is not None:
        ids.flat[0] = pad % 9  # make sure the padding row is looked up
    y = prog.run({"ids": ids}, params)["y"]
    assert y.shape == shape + (4,) and y.dtype == np.float32
    with torch.no_grad():
        assert_close(y, ref(torch.from_numpy(ids)).numpy())
    np_out, _, _ = compare_numpy_torch(prog)  # random ids drawn inside the table
    assert np_out["y"].shape == shape + (4,)


def test_embedding_symbolic_batch_and_init():
    prog = load("input ids: i64[B, T]\noutput y = ids -> embedding(1000, 64)")
    out = prog.graph.outputs[0][1]
    assert str(prog.graph.type_of(out)) == "f32[B, T, 64]"
    w = prog.init_params(seed=0)["emb1.weight"]
    # torch.nn.Embedding draws N(0, 1).
    assert abs(w.mean()) < 0.02 and abs(w.std() - 1) < 0.02
    compare_numpy_torch(prog, bind={"B": 2, "T": 5})


def test_embedding_lookup_returns_table_rows():
    prog = load("input ids: i64[3]\noutput y = ids -> embedding(5, 2)")
    params = {"emb1.weight": np.arange(10, dtype=np.float32).reshape(5, 2)}
    y = prog.run({"ids": np.array([4, 0, 4])}, params)["y"]
    np.testing.assert_array_equal(y, [[8, 9], [0, 1], [8, 9]])


@pytest.mark.parametrize("bad", [9, 12, -1])
def test_out_of_range_index_is_a_located_run_error(bad):
    prog = load("input ids: i64[2, 3]\noutput y = ids -> embedding(9, 4)")
    ids = np.zeros((2, 3), np.int64)
    ids[1, 2] = bad
    with pytest.raises(DslcError) as exc:
        prog.run({"ids": ids})
    d = exc.value.diagnostics[0]
    assert d.code == "E0507" and "out of range" in d.message
    assert d.expected == "0 <= index < 9" and d.found == str(bad)
    assert d.span.line == 3  # the embedding's statement


def test_padding_row_normalises_negative_indices():
    assert padding_row(EmbeddingAttrs(num_embeddings=9, embedding_dim=2)) is None
    assert padding_row(EmbeddingAttrs(num_embeddings=9, embedding_dim=2, padding_idx=3)) == 3
    assert padding_row(EmbeddingAttrs(num_embeddings=9, embedding_dim=2, padding_idx=-1)) == 8


def test_init_zeroes_the_padding_row():
    prog = load("input ids: i64[2]\noutput y = ids -> embedding(9, 4, padding_idx=2)")
    w = prog.init_params()["emb1.weight"]
    np.testing.assert_array_equal(w[2], np.zeros(4, np.float32))
    assert np.all(np.delete(w, 2, axis=0) != 0)


def test_embedding_errors():
    d = diag("input ids: f32[2, 3]\noutput y = ids -> embedding(9, 4)")
    assert d.code == "E0302" and "i64" in d.expected and d.found == "f32[2, 3]"
    d = diag("input ids: i64[2, 3]\noutput y = ids -> embedding(9, 4, padding_idx=9)")
    assert d.code == "E0301" and d.expected == "-9 <= padding_idx < 9"
    d = diag("input ids: i64[2, 3]\noutput y = ids -> embedding(0, 4)")
    assert d.code == "E0301" and "num_embeddings" in d.message
    d = diag("input ids: i64[2, 3]\noutput y = ids -> embedding(9)")
    assert d.code == "E0208" and "embedding_dim" in d.message
