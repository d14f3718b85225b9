"""The ``kronsgd`` command line: thin wrappers over the library, ``main(argv) -> int``.

Subcommands: ``demo``, ``inspect`` (here), ``train`` (cli/train.py), ``predict``
(cli/predict.py) and ``bench`` (cli/bench.py). Exit codes: 0 success, 1 a run that failed
(diverged, or an internal error), 2 bad usage or bad input, always with a one-line message
on stderr; KRONSGD_DEBUG=1 shows the traceback of an internal error.
"""

from __future__ import annotations

import argparse
import os
import sys

from ..base.errors import DivergenceError, KronsgdError, ValidationError
from . import args as A
from . import bench, predict, train


def _cmd_demo(args) -> int:
    from .demo import run_demo

    plots = _demo_plot_paths(args.plots)
    trainer, s = run_demo(n=args.n, width=args.width, steps=args.steps, seed=args.seed)
    if plots:
        from .plots import plot_fired, plot_loss

        title = f"kronsgd demo: n = {s['n']}, d = {s['d']:,} ({s['dims'][0]}x{s['dims'][1]}), m = {s['width']}"
        plot_loss(trainer.history, plots[0], title=title)
        plot_fired(trainer.history, s["width"], trainer.net.shift, plots[1], title=title)
    if args.json:
        print(A.dump_json({"summary": s, "history": trainer.history, "plots": plots}))
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
    if plots:
        print(f"pictures: {plots[0]} (loss), {plots[1]} (fired fraction)")
    return 0


def _demo_plot_paths(folder: str) -> list[str]:
    """The demo's two PNG paths in ``folder`` (created if needed); none for an empty folder name."""
    if not folder:
        return []
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as exc:
        raise ValidationError(f"--plots {folder!r} cannot be created: {exc.strerror or exc}.") from None
    return [os.path.join(folder, "demo_loss.png"), os.path.join(folder, "demo_fired.png")]


def _cmd_inspect(args) -> int:
    from ..advisor.report import inspect, rank_from_text
    from .files import load_samples

    X = load_samples(args.file, args.key)
    rank = rank_from_text(args.rank)
    report = inspect(
        X, shape=args.shape, rank=rank, energy=args.energy, width=args.width, batch_size=args.batch, steps=args.steps
    )
    print(A.dump_json(report.to_dict()) if args.json else report)
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The parser of every subcommand."""
    fmt = A.HelpFormatter
    parser = argparse.ArgumentParser(
        prog="kronsgd",
        description="Kronecker SGD: train two-layer nets on tensor-product data at a step cost independent of d.",
        formatter_class=fmt,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    demo = sub.add_parser(
        "demo",
        help="train on synthetic Kronecker data, print loss and per-step cost, draw pictures",
        formatter_class=fmt,
    )
    demo.add_argument("--n", type=int, default=2048, help="training points")
    demo.add_argument("--width", type=int, default=1024, help="hidden neurons m")
    demo.add_argument("--steps", type=int, default=600, help="SGD steps")
    demo.add_argument("--seed", type=int, default=0, help="random seed")
    demo.add_argument(
        "--plots", metavar="DIR", default="kronsgd-demo", help="folder for demo_loss.png and demo_fired.png"
    )
    demo.add_argument("--no-plots", dest="plots", action="store_const", const="", help="draw no pictures")
    demo.add_argument("--json", action="store_true", help="print the summary and history as JSON")
    demo.set_defaults(handler=_cmd_demo)
    inspect = sub.add_parser(
        "inspect",
        help="find the Kronecker structure of dense samples in a .npy/.npz file and predict the speedup",
        formatter_class=fmt,
    )
    inspect.add_argument("file", metavar="FILE", help=".npy holding X (n, d) or (n, d1, d2), or .npz with X in it")
    inspect.add_argument("--key", default=None, help="array of a .npz file to read (default: X, else its only array)")
    inspect.add_argument("--shape", default="auto", help="factor dimensions such as 8x8 or 8x8x16, or auto")
    inspect.add_argument("--rank", default="auto", help="terms per split, or auto")
    inspect.add_argument("--energy", type=float, default=0.99, help="share of the squared norm to keep (rank auto)")
    inspect.add_argument("--width", type=int, default=1024, help="hidden neurons m of the cost model")
    inspect.add_argument("--batch", type=int, default=32, help="batch size |S| of the cost model")
    inspect.add_argument("--steps", type=int, default=1000, help="SGD steps of the whole job to predict")
    inspect.add_argument("--json", action="store_true", help="print the report as JSON")
    inspect.set_defaults(handler=_cmd_inspect)
    train.add_parser(sub, fmt)
    predict.add_parser(sub, fmt)
    bench.add_parser(sub, fmt)
    return parser


def main(argv=None) -> int:
    """Run the command line on ``argv`` (default: sys.argv[1:]) and return the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits 2 on bad usage and 0 on --help
        return int(exc.code or 0)
    try:
        return args.handler(args)
    except DivergenceError as exc:
        return _fail(args, exc, 1)
    except KronsgdError as exc:
        return _fail(args, exc, 2)
    except BrokenPipeError:  # the reader of stdout stopped early (e.g. `| head`): not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        return 0
    except OSError as exc:  # a file that cannot be written or read after the checks
        return _fail(args, f"{exc.strerror or exc}: {exc.filename!r}" if exc.filename else exc, 2)
    except KeyboardInterrupt:
        print(f"kronsgd {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # a bug, not the user's input: one line, the traceback on request
        if os.environ.get("KRONSGD_DEBUG"):
            raise
        detail = f"{type(exc).__name__}: {exc}"
        return _fail(args, f"internal error ({detail}). Set KRONSGD_DEBUG=1 to see the traceback, and report it.", 1)


def _fail(args, error, code: int) -> int:
    text = " ".join(str(error).split())  # one line, whatever the message's own line breaks
    print(f"kronsgd {args.command}: error: {text}", file=sys.stderr)
    return code


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())
