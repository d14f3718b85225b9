"""The ``kronsgd`` command line: thin wrappers over the library, ``main(argv) -> int``.

Exit codes: 0 success, 1 a run that failed (e.g. diverged), 2 bad usage or bad input.
"""

from __future__ import annotations

import argparse
import json
import sys

from ._errors import KronsgdError


def _cmd_demo(args) -> int:
    from ._demo import run_demo

    trainer, s = run_demo(n=args.n, width=args.width, steps=args.steps, seed=args.seed)
    if args.json:
        print(json.dumps({"summary": s, "history": trainer.history}, indent=2))
        return 0
    print(f"kronsgd demo: {s['n']} synthetic points x = u ⊗ v with dims {s['dims']} (d = {s['d']:,}),")
    print(f"  a {s['width']}-neuron shifted-ReLU net, batch {s['batch_size']}, Gram {s['gram']}.")
    print(f"{'step':>6} {'loss':>12} {'fired/pt':>9} {'ms/step':>8} {'nnz/step':>9}")
    for h in trainer.history:
        ms = "" if h["step"] == 0 else f"{1e3 * h['step_seconds']:.3f}"
        print(f"{h['step']:>6} {h['loss']:>12.4f} {h['fired']:>9.1f} {ms:>8} {h.get('nnz', 0):>9.0f}")
    print(
        f"per step: {s['step_ms']:.3f} ms, nnz(c) = {s['nnz_per_step']:.0f} "
        f"(cost model |S|·m·Φ̄(b) = {s['expected_nnz_per_step']:.0f}), "
        f"{s['rows_touched_per_step']:.0f} P rows touched"
    )
    ratio = s["dense_multiply_adds_per_step"] / s["multiply_adds_per_step"]
    print(
        f"work per step: {s['multiply_adds_per_step']:.3g} multiply-adds, independent of d; "
        f"dense SGD would do {s['dense_multiply_adds_per_step']:.3g} ({ratio:.0f}x more)."
    )
    print(f"training loss: {s['loss_start']:.4f} -> {s['loss_end']:.4f}")
    return 0


def _cmd_inspect(args) -> int:
    from ._inspect import inspect, load_samples, rank_from_text

    X = load_samples(args.file, args.key)
    rank = rank_from_text(args.rank)
    report = inspect(X, shape=args.shape, rank=rank, energy=args.energy, width=args.width, batch_size=args.batch)
    print(json.dumps(report.to_dict(), indent=2) if args.json else report)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kronsgd",
        description="Kronecker SGD: train two-layer nets on tensor-product data at a step cost independent of d.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    demo = sub.add_parser(
        "demo",
        help="train on synthetic Kronecker data and print loss and per-step cost",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    demo.add_argument("--n", type=int, default=2048, help="training points")
    demo.add_argument("--width", type=int, default=1024, help="hidden neurons m")
    demo.add_argument("--steps", type=int, default=600, help="SGD steps")
    demo.add_argument("--seed", type=int, default=0, help="random seed")
    demo.add_argument("--json", action="store_true", help="print the summary and history as JSON")
    demo.set_defaults(handler=_cmd_demo)
    inspect = sub.add_parser(
        "inspect",
        help="find the Kronecker structure of dense samples in a .npy/.npz file and predict the speedup",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    inspect.add_argument("file", metavar="FILE", help=".npy holding X (n, d) or (n, d1, d2), or .npz with X in it")
    inspect.add_argument("--key", default=None, help="array of a .npz file to read (default: X, else its only array)")
    inspect.add_argument("--shape", default="auto", help="factor dimensions such as 8x8 or 8x8x16, or auto")
    inspect.add_argument("--rank", default="auto", help="terms per split, or auto")
    inspect.add_argument("--energy", type=float, default=0.99, help="share of the squared norm to keep (rank auto)")
    inspect.add_argument("--width", type=int, default=1024, help="hidden neurons m of the cost model")
    inspect.add_argument("--batch", type=int, default=32, help="batch size |S| of the cost model")
    inspect.add_argument("--json", action="store_true", help="print the report as JSON")
    inspect.set_defaults(handler=_cmd_inspect)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits 2 on bad usage and 0 on --help
        return int(exc.code or 0)
    try:
        return args.handler(args)
    except KronsgdError as exc:
        print(f"kronsgd {args.command}: error: {exc}", file=sys.stderr)
        return 1 if exc.__class__.__name__ == "DivergenceError" else 2


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())
