"""GPU check, run on demand on a CUDA machine: generated zoo modules run on the GPU and equal
the NumPy interpreter (CPU); torch.compile(fullgraph=True) with the default (inductor) back end
works on the GPU; and -O2 ResNet-18 (batch norms folded) against -O0 in eval at batch 16.

`python bench/gpu_check.py [--specs a.dl,b.dl]`; prints a table, exits 1 on a mismatch.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

import dslc  # noqa: E402

SPECS = ["lenet5.dl", "alexnet.dl", "vgg16.dl", "resnet18.dl", "inception_block.dl",
         "spatial_transformer.dl", "elman_rnn.dl", "lstm.dl", "gru.dl", "birnn.dl",
         "seq2seq.dl", "transformer_encoder.dl", "gpt_tiny.dl", "vit_tiny.dl", "gcn.dl",
         "gat.dl", "gin.dl", "chebnet.dl", "vae.dl"]
COMPILE = ["lenet5.dl", "resnet18.dl", "transformer_encoder.dl", "gcn.dl", "elman_rnn.dl"]
BIND = {"B": 2, "T": 6, "S": 5, "N": 12, "E": 30, "H": 32, "W": 32}


def rel_err(a: np.ndarray, b: np.ndarray) -> float:
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1.0)) if a.size else 0.0


def gpu_module(prog, params):
    m = prog.to_torch()()
    m.load_state_dict({k: torch.from_numpy(v) for k, v in params.items()}, strict=True)
    return m.eval().cuda()


def check(name: str, compile_it: bool) -> tuple[str, float, float | None]:
    prog = dslc.load(ROOT / "specs" / name)
    params = prog.init_params(0)
    inputs = prog.random_inputs(0, BIND)
    ref = prog.run(inputs, {k: v.copy() for k, v in params.items()})
    args = prog.torch_arg_names()
    m = gpu_module(prog, params)
    feed = {args[k]: torch.from_numpy(v).cuda() for k, v in inputs.items()}
    with torch.no_grad():
        out = m(**feed)
        out = out if isinstance(out, tuple) else (out,)
        err = max(rel_err(o.float().cpu().numpy(), r) for o, r in zip(out, ref.values()))
        cerr = None
        if compile_it:
            with torch._dynamo.config.patch(allow_rnn=True):
                c = torch.compile(m, fullgraph=True)
                cout = c(**feed)
            cout = cout if isinstance(cout, tuple) else (cout,)
            cerr = max(rel_err(o.float().cpu().numpy(), r) for o, r in zip(cout, ref.values()))
    return name, err, cerr


def resnet_o2(batch: int = 16, repeats: int = 20) -> None:
    spec = ROOT / "specs" / "resnet18.dl"
    p0 = dslc.load(spec, opt_level=0)
    p2 = dslc.load(spec, opt_level=2)
    params = p0.init_params(0)
    x = torch.randn(batch, 3, 224, 224, device="cuda")
    times = {}
    for label, prog in (("-O0", p0), ("-O2", p2)):
        m = gpu_module(prog, params)
        with torch.no_grad():
            for _ in range(5):
                m(x=x)
            torch.cuda.synchronize()
            runs = []
            for _ in range(repeats):
                t = time.perf_counter()
                m(x=x)
                torch.cuda.synchronize()
                runs.append(time.perf_counter() - t)
        times[label] = statistics.median(runs)
    print(f"ResNet-18 eval b{batch} on {torch.cuda.get_device_name()}: -O0 "
          f"{times['-O0'] * 1e3:.2f} ms, -O2 {times['-O2'] * 1e3:.2f} ms, "
          f"ratio {times['-O2'] / times['-O0']:.3f}")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--specs")
    args = ap.parse_args()
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    names = args.specs.split(",") if args.specs else SPECS
    bad = 0
    print(f"torch {torch.__version__}, {torch.cuda.get_device_name()}")
    print(f"{'spec':28} {'cuda vs numpy':>14} {'compiled':>10}")
    for name in names:
        if not (ROOT / "specs" / name).exists():
            continue
        try:
            n, err, cerr = check(name, name in COMPILE)
        except Exception as exc:  # noqa: BLE001 - report every spec, then fail
            print(f"{name:28} ERROR {type(exc).__name__}: {str(exc)[:200]}")
            bad += 1
            continue
        ok = err < 1e-4 and (cerr is None or cerr < 1e-3)
        bad += not ok
        c = "-" if cerr is None else f"{cerr:.1e}"
        print(f"{n:28} {err:14.1e} {c:>10} {'ok' if ok else 'MISMATCH'}")
    resnet_o2()
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
