"""Vector-Jacobian products of the `rnn`, `lstm` and `gru` fast paths (the `vjp` of their op
records in ops/recurrent.py): backpropagation through time, run by the interpreter's
backward walk.

The forward kernel is tuned for inference and keeps nothing, so the vjp runs each layer and
direction again in the plain form of torch's equations, keeping every step's gates and
states, then walks the steps backwards; except an LSTM without sequence lengths whose forward
ran for the backward walk (ctx.grad): its kernel recorded every step's gates and states, and
the tuned vjp walks back from those (no second forward). Memory: all step states and gates
of one layer and direction at a time (T x B x G·H), plus every layer's input sequence
(L x B x T x D·H); recorded by the forward, those of every layer.
Dropout between layers reuses the forward's masks (ctx.saved["dropout_l<layer>"]).
Sequence lengths: a step past a row's length keeps the row's state and outputs zero, in both
directions, so no cotangent flows through it.
"""

from __future__ import annotations

import numpy as np

from dslc.ops.recurrent_common import dirs, seq_lengths, suffixes


def _sigmoid(v: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * v))


class _Direction:
    """One layer and direction: the weights and the per-step values its backward needs."""

    def __init__(self, kind: str, relu: bool, p: dict, name: str, hs: int, tuned: bool = False):
        self.kind, self.relu, self.hs, self.name = kind, relu, hs, name
        self.tuned = tuned and kind == "lstm"
        self.fast = False  # whether forward took _forward_lstm (backward follows it)
        self.w_ih, self.w_hh = p[f"weight_ih_{name}"], p[f"weight_hh_{name}"]
        gh = self.w_hh.shape[0]
        self.b_ih = p.get(f"bias_ih_{name}", np.zeros(gh, self.w_hh.dtype))
        self.b_hh = p.get(f"bias_hh_{name}", np.zeros(gh, self.w_hh.dtype))
        self.has_bias = f"bias_ih_{name}" in p

    def forward(self, u, h, c, mask, order) -> np.ndarray:
        """u [B, T, F] the layer input, h/c [B, H] initial states, mask [T, B, 1] (None: all
        valid); returns out [B, T, H] and keeps what backward needs."""
        self.u, self.order, self.mask = u, order, mask
        self.fast = self.tuned and mask is None
        if self.fast:
            return self._forward_lstm(u, h, c, order)
        self.steps = []
        out = np.zeros(u.shape[:2] + (self.hs,), np.result_type(u, self.w_ih))
        xp = u @ self.w_ih.T + self.b_ih  # [B, T, G·H]
        hs = self.hs
        for t in order:
            hh = h @ self.w_hh.T + self.b_hh
            rec = {"h": h, "c": c}
            if self.kind == "lstm":
                gates = xp[:, t] + hh
                i, f = _sigmoid(gates[:, :hs]), _sigmoid(gates[:, hs:2 * hs])
                g, o = np.tanh(gates[:, 2 * hs:3 * hs]), _sigmoid(gates[:, 3 * hs:])
                c_new = f * c + i * g
                tc = np.tanh(c_new)
                h_new = o * tc
                rec.update(i=i, f=f, g=g, o=o, tc=tc)
            elif self.kind == "gru":
                gi = xp[:, t]
                r = _sigmoid(gi[:, :hs] + hh[:, :hs])
                z = _sigmoid(gi[:, hs:2 * hs] + hh[:, hs:2 * hs])
                n = np.tanh(gi[:, 2 * hs:] + r * hh[:, 2 * hs:])
                h_new = (1 - z) * n + z * h
                c_new = None
                rec.update(r=r, z=z, n=n, hh_n=hh[:, 2 * hs:])
            else:
                a = xp[:, t] + hh
                h_new = np.maximum(a, 0) if self.relu else np.tanh(a)
                c_new = None
                rec.update(hn=h_new)
            if mask is None:
                h, c = h_new, c_new
                out[:, t] = h_new
            else:
                m = mask[t]
                h = np.where(m, h_new, h)
                c = None if c_new is None else np.where(m, c_new, c)
                out[:, t] = h_new * m
            self.steps.append(rec)
        return out

    def backward(self, gout, dh, dc, grads):
        """gout [B, T, H] the cotangent of this direction's outputs, dh/dc [B, H] that of its
        final states; adds the weights' gradients into `grads`; returns (du, dh0, dc0)."""
        if self.fast:
            return self._backward_lstm(gout, dh, dc, grads)
        name = self.name
        dgates_all = np.zeros(self.u.shape[:2] + (self.w_ih.shape[0],), gout.dtype)
        # W_hh's products, and the states they multiplied, per step: one GEMM after the loop
        # instead of a small one per step
        dgh_all = dgates_all if self.kind != "gru" else np.zeros_like(dgates_all)
        h_prev = np.zeros(self.u.shape[:2] + (self.hs,), gout.dtype)
        for t, rec in zip(reversed(self.order), reversed(self.steps)):
            m = 1.0 if self.mask is None else self.mask[t]
            dhn = (dh + gout[:, t]) * m
            keep_h = dh * (1 - m)  # steps past a row's length hand the state on unchanged
            h = rec["h"]
            if self.kind == "lstm":
                i, f, g, o, tc = rec["i"], rec["f"], rec["g"], rec["o"], rec["tc"]
                dcn = dc * m + dhn * o * (1 - tc * tc)
                dgates = np.concatenate([dcn * g * i * (1 - i), dcn * rec["c"] * f * (1 - f),
                                         dcn * i * (1 - g * g), dhn * tc * o * (1 - o)], axis=1)
                dc = dcn * f + dc * (1 - m)
                dgh = dgates
            elif self.kind == "gru":
                r, z, n = rec["r"], rec["z"], rec["n"]
                dan = dhn * (1 - z) * (1 - n * n)
                dar = dan * rec["hh_n"] * r * (1 - r)
                daz = dhn * (h - n) * z * (1 - z)
                dgates = np.concatenate([dar, daz, dan], axis=1)
                dgh = np.concatenate([dar, daz, dan * r], axis=1)
                keep_h = keep_h + dhn * z
            else:
                hn = rec["hn"]
                dgates = dhn * ((hn > 0) if self.relu else (1 - hn * hn))
                dgh = dgates
            dgates_all[:, t] = dgates
            if self.kind == "gru":
                dgh_all[:, t] = dgh
            h_prev[:, t] = h
            dh = dgh @ self.w_hh + keep_h
        flat = dgates_all.reshape(-1, dgates_all.shape[-1])
        grads[f"weight_ih_{name}"] = flat.T @ self.u.reshape(-1, self.u.shape[-1])
        flat_hh = dgh_all.reshape(flat.shape)
        grads[f"weight_hh_{name}"] = flat_hh.T @ h_prev.reshape(-1, self.hs)
        if self.has_bias:
            grads[f"bias_ih_{name}"] = flat.sum(axis=0)
            grads[f"bias_hh_{name}"] = flat_hh.sum(axis=0)
        return dgates_all @ self.w_ih, dh, dc


    # ---- the tuned LSTM: the same equations, on preallocated time-major buffers ------------

    def _forward_lstm(self, u, h, c, order) -> np.ndarray:
        """The LSTM without sequence lengths: every step's gates written in place into the
        input projections' buffer (time-major, [B, 4H] rows contiguous), the states into
        [T+1, B, H] buffers; about a dozen ufunc calls a step and no allocation, where the
        plain form made some twenty temporaries and a dict."""
        hs = self.hs
        bsz, steps = u.shape[:2]
        dt = np.result_type(u, self.w_ih)
        xp = np.matmul(np.swapaxes(u, 0, 1).reshape(-1, u.shape[2]), self.w_ih.T)
        xp = xp.astype(dt, copy=False).reshape(steps, bsz, -1)
        xp += self.b_ih + self.b_hh
        cs = np.empty((steps + 1, bsz, hs), dt)
        hs_ = np.empty((steps + 1, bsz, hs), dt)
        tcs = np.empty((steps, bsz, hs), dt)
        cs[0], hs_[0] = c, h
        hh = np.empty((bsz, 4 * hs), dt)
        tmp = np.empty((bsz, hs), dt)
        w_hh_t = self.w_hh.T
        one = np.ones((), dt)
        with np.errstate(over="ignore"):
            for k, t in enumerate(order):
                gates = xp[t]
                np.matmul(hs_[k], w_hh_t, out=hh)
                gates += hh
                for sig in (gates[:, :2 * hs], gates[:, 3 * hs:]):  # i, f and o
                    np.negative(sig, out=sig)
                    np.exp(sig, out=sig)
                    np.add(sig, one, out=sig)
                    np.reciprocal(sig, out=sig)
                i, f = gates[:, :hs], gates[:, hs:2 * hs]
                g, o = gates[:, 2 * hs:3 * hs], gates[:, 3 * hs:]
                np.tanh(g, out=g)
                np.multiply(f, cs[k], out=cs[k + 1])
                np.multiply(i, g, out=tmp)
                cs[k + 1] += tmp
                np.tanh(cs[k + 1], out=tcs[k])
                np.multiply(o, tcs[k], out=hs_[k + 1])
        self.gates, self.cs, self.hs_, self.tcs = xp, cs, hs_, tcs
        out = np.empty((bsz, steps, hs), dt)
        out.swapaxes(0, 1)[np.asarray(order)] = hs_[1:]
        return out

    def load_lstm(self, u, saved, d: int, order) -> np.ndarray:
        """What _forward_lstm keeps, from what the forward kernel recorded for direction d
        (ops/recurrent.py, ctx.saved["lstm_l<layer>"]: feature-major, loop order, gates as
        i, f, o, g) instead of running the layer again; returns its outputs [B, T, H]."""
        _, h0, c0, gates, cs, tcs, out = saved
        if out.shape[1] > 1:  # the recorded arrays have a directions axis
            gates, cs, tcs = gates[:, d], cs[:, d], tcs[:, d]
        hs = self.hs
        steps, bsz, dt = out.shape[0], out.shape[3], out.dtype
        idx = np.asarray(order)
        gt = np.empty((steps, bsz, 4 * hs), dt)  # by time, torch's order i, f, g, o
        gt[idx, :, :2 * hs] = gates[:, :2 * hs].transpose(0, 2, 1)
        gt[idx, :, 2 * hs:3 * hs] = gates[:, 3 * hs:].transpose(0, 2, 1)
        gt[idx, :, 3 * hs:] = gates[:, 2 * hs:3 * hs].transpose(0, 2, 1)
        c_all = np.empty((steps + 1, bsz, hs), dt)
        c_all[0], c_all[1:] = c0[d].T, cs.transpose(0, 2, 1)
        h_all = np.empty((steps + 1, bsz, hs), dt)
        h_all[0], h_all[1:] = h0[d].T, out[:, d].transpose(0, 2, 1)
        self.u, self.order, self.mask, self.fast = u, order, None, True
        self.gates, self.cs, self.hs_ = gt, c_all, h_all
        self.tcs = np.ascontiguousarray(tcs.transpose(0, 2, 1))
        y = np.empty((bsz, steps, hs), dt)
        y.swapaxes(0, 1)[idx] = h_all[1:]
        return y

    def _backward_lstm(self, gout, dh, dc, grads):
        hs, name, order = self.hs, self.name, self.order
        steps, bsz = self.gates.shape[:2]
        dt = gout.dtype
        dgates = np.empty((steps, bsz, 4 * hs), dt)
        dh = np.array(dh, dt)
        dc = np.array(dc, dt)
        dcn = np.empty((bsz, hs), dt)
        t1 = np.empty((bsz, hs), dt)
        t2 = np.empty((bsz, hs), dt)
        gout_t = np.swapaxes(gout, 0, 1)
        for k in range(steps - 1, -1, -1):
            t = order[k]
            gates, dg = self.gates[t], dgates[t]
            i, f = gates[:, :hs], gates[:, hs:2 * hs]
            g, o = gates[:, 2 * hs:3 * hs], gates[:, 3 * hs:]
            tc = self.tcs[k]
            dh += gout_t[t]  # dhn
            # dcn = dc + dhn * o * (1 - tc²)
            np.multiply(tc, tc, out=t1)
            np.subtract(1, t1, out=t1)
            t1 *= o
            t1 *= dh
            np.add(dc, t1, out=dcn)
            # do = dhn * tc * o * (1 - o)
            do = dg[:, 3 * hs:]
            np.subtract(1, o, out=t1)
            t1 *= o
            np.multiply(dh, tc, out=do)
            do *= t1
            # di = dcn * g * i * (1 - i)
            di = dg[:, :hs]
            np.subtract(1, i, out=t1)
            t1 *= i
            np.multiply(dcn, g, out=di)
            di *= t1
            # df = dcn * c_prev * f * (1 - f)
            df = dg[:, hs:2 * hs]
            np.subtract(1, f, out=t1)
            t1 *= f
            np.multiply(dcn, self.cs[k], out=df)
            df *= t1
            # dg = dcn * i * (1 - g²)
            dgg = dg[:, 2 * hs:3 * hs]
            np.multiply(g, g, out=t2)
            np.subtract(1, t2, out=t2)
            t2 *= i
            np.multiply(dcn, t2, out=dgg)
            np.multiply(dcn, f, out=dc)
            np.matmul(dg, self.w_hh, out=dh)
        flat = dgates.reshape(-1, 4 * hs)
        u_t = np.swapaxes(self.u, 0, 1).reshape(-1, self.u.shape[2])
        grads[f"weight_ih_{name}"] = flat.T @ u_t
        # h before step t, in time order
        h_prev = self.hs_[:-1][np.argsort(order)]
        grads[f"weight_hh_{name}"] = flat.T @ h_prev.reshape(-1, hs)
        if self.has_bias:
            b = flat.sum(axis=0)
            grads[f"bias_ih_{name}"] = b
            grads[f"bias_hh_{name}"] = b.copy()
        du = (flat @ self.w_ih).reshape(steps, bsz, -1)
        return np.swapaxes(du, 0, 1), dh, dc


def recurrent_vjp(kind: str, tuned: bool = True):
    """The vjp of `kind` (rnn, lstm, gru): cotangents of x and the initial states given as
    inputs (None for the lengths), and of every weight and bias. `tuned`: an LSTM without
    sequence lengths takes _Direction's tuned form; tuned=False is the plain form, which
    tests/ops/test_recurrent_grad.py holds it equal to."""
    def vjp(a, ins, outs, gouts, ctx):
        x = ins[0]
        bsz, steps, _ = x.shape
        hs, nd = a.hidden_size, dirs(a)
        lengths = seq_lengths(ins, x)
        inits = ins[1:len(ins) - (lengths is not None)]
        h0 = inits[0] if inits else np.zeros((a.num_layers * nd, bsz, hs), x.dtype)
        c0 = inits[1] if len(inits) > 1 else np.zeros_like(h0)
        mask = None
        if lengths is not None:
            # [T, B, 1], as x's dtype so that (1 - mask) keeps it
            mask = (np.arange(steps)[:, None] < lengths)[:, :, None].astype(x.dtype)
        relu = getattr(a, "nonlinearity", "tanh") == "relu"
        orders = (list(range(steps)), list(range(steps - 1, -1, -1)))
        # forward again, keeping every step
        layers, u = [], x
        inputs = []
        for layer in range(a.num_layers):
            # what the forward kernel kept of this layer (a tuned LSTM's, without lengths)
            rec = ctx.saved.get(f"lstm_l{layer}") if tuned and mask is None else None
            if rec is not None:
                u = np.swapaxes(rec[0], 0, 1)  # the layer's input as the kernel had it
            inputs.append(u)
            cells, ys = [], []
            for d, s in enumerate(suffixes(a)):
                cell = _Direction(kind, relu, ctx.params, f"l{layer}{s}", hs, tuned)
                k = layer * nd + d
                if rec is not None:
                    ys.append(cell.load_lstm(u, rec, d, orders[d]))
                else:
                    ys.append(cell.forward(u, h0[k], c0[k] if kind == "lstm" else None, mask,
                                           orders[d]))
                cells.append(cell)
            layers.append(cells)
            u = np.concatenate(ys, axis=2)
            drop = ctx.saved.get(f"dropout_l{layer}")
            if drop is not None:
                u = u * drop
        zeros = [np.zeros_like(o) for o in outs]
        gy, gh_n = (g if g is not None else z for g, z in zip(gouts[:2], zeros[:2]))
        gc_n = None
        if kind == "lstm":
            gc_n = gouts[2] if gouts[2] is not None else zeros[2]
        grads: dict[str, np.ndarray] = {}
        gh0 = np.zeros_like(h0)
        gc0 = np.zeros_like(h0)
        for layer in reversed(range(a.num_layers)):
            drop = ctx.saved.get(f"dropout_l{layer}")
            if drop is not None:
                gy = gy * drop
            gu = 0.0
            for d, cell in enumerate(layers[layer]):
                k = layer * nd + d
                dc = gc_n[k] if gc_n is not None else None
                du, gh0[k], dc0 = cell.backward(gy[:, :, d * hs:(d + 1) * hs], gh_n[k], dc,
                                                grads)
                if dc0 is not None:
                    gc0[k] = dc0
                gu = gu + du
            gy = gu
        gins = [gy] + [gh0] + ([gc0] if kind == "lstm" else [])
        gins = [gins[0]] + gins[1:1 + len(inits)] + ([None] if lengths is not None else [])
        return gins, grads
    return vjp
