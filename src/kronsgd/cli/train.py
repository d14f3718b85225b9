"""``kronsgd train``: read points and targets, train KronSGD with a progress bar, save the model.

The command only converts files and options into library calls (``load_points``,
``TwoLayerNet``, ``KronSGD.run``, ``net.save``) and reports what they return. ``--solver``
(cli/solver.py) can run the net's kernel limit instead, or choose between the two.
"""

from __future__ import annotations

import time

import numpy as np

from ..base.errors import DivergenceError, ValidationError
from ..engine.trainer import KronSGD
from ..model.net import TwoLayerNet
from . import args as A
from . import solver as solvers
from .files import check_output_path, check_targets_for, load_points, load_targets, one_hot
from .progress import TrainingProgress, progress_wanted

_LOG_POINTS = 50  # history records of a run with --log-every auto: the loss curve's resolution


def add_parser(sub, formatter) -> None:
    """Register ``train`` on the subcommand set ``sub``."""
    p = sub.add_parser(
        "train",
        help="train a network on points from a .npz file and save the model",
        description=(
            "Train the two-layer shifted-ReLU network with Kronecker SGD. DATA is a .npz holding a dense X "
            "((n, d) or (n, d1, d2), factored with --shape/--rank/--energy) or factors factor_0, factor_1, ... "
            "(each (n, d_l) or (n, R, d_l)), and the targets y unless --y gives them."
        ),
        formatter_class=formatter,
    )
    p.add_argument("data", metavar="DATA", help=".npz with X or factor_0, factor_1, ... (and y)")
    p.add_argument("--y", metavar="FILE", help="targets as .csv (one column per output) or .npy; replaces DATA's y")
    p.add_argument("--out", metavar="MODEL.npz", required=True, help="where to save the trained model")
    g = p.add_argument_group("structure of a dense X")
    g.add_argument("--shape", default="auto", help="factor dimensions such as 64x64 or 8x8x16, or auto")
    g.add_argument("--rank", default="auto", type=A.auto_or_positive_int, help="terms per split, or auto")
    g.add_argument("--energy", default=0.99, type=A.share, help="share of Σ||x||² to keep with --rank auto")
    g = p.add_argument_group("model")
    g.add_argument("--width", default=1024, type=A.positive_int, help="hidden neurons m")
    g.add_argument(
        "--outputs",
        default="auto",
        type=A.auto_or_positive_int,
        help="output columns C; auto: the columns of y, or max label + 1 with --classify",
    )
    g.add_argument(
        "--shift", default="auto", type=A.auto_or_nonnegative_float, help="ReLU threshold b; auto: sqrt(0.4 ln m)"
    )
    g.add_argument(
        "--classify",
        action="store_true",
        help="y holds integer class labels 0..C-1, trained as one-hot outputs by squared loss",
    )
    g.add_argument("--seed", default=0, type=A.nonnegative_int, help="seed of the initial weights and the batches")
    g.add_argument(
        "--init",
        default="gaussian",
        choices=("gaussian", "kronecker"),
        help="initial first layer: Gaussian (the paper's), or K Gaussian Kronecker products (set-up free of d)",
    )
    g.add_argument(
        "--init-rank", default=None, type=A.positive_int, help="K, the terms of --init kronecker (default 16)"
    )
    g = p.add_argument_group("training")
    g.add_argument("--lr", default=1.0, type=A.positive_float, help="learning rate η")
    g.add_argument("--batch", default=32, type=A.positive_int, help="batch size |S|")
    g.add_argument("--steps", default=1000, type=A.positive_int, help="SGD steps")
    g.add_argument(
        "--log-every",
        default="auto",
        type=A.auto_or_positive_int,
        help=f"record the full training loss every this many steps; auto: about {_LOG_POINTS} records",
    )
    g.add_argument("--workers", default=1, type=A.positive_int, help="asynchronous worker threads")
    g.add_argument("--dtype", default="float32", choices=("float32", "float64"), help="precision of the state")
    g.add_argument(
        "--gram",
        default="auto",
        choices=("auto", "precomputed", "on_the_fly"),
        help="keep the n x n Gram matrix, or compute the batch's rows each step",
    )
    g.add_argument(
        "--fired",
        default="auto",
        choices=("auto", "scan", "tree"),
        help="find fired neurons by scanning, or with a max tree per point (faster for large width); the same bits",
    )
    solvers.add_solver_options(p)
    g = p.add_argument_group("output")
    g.add_argument("--plot", metavar="PNG", help="write loss and fired-fraction plots to this .png")
    g.add_argument("--json", action="store_true", help="print the summary and history as JSON")
    g.add_argument("--quiet", action="store_true", help="no progress bar; print only the result")
    p.set_defaults(handler=run_train)


def read_training_set(args):
    """Points, (n, C) targets, their source text and the class labels (None unless --classify)."""
    points = load_points(args.data, shape=args.shape, rank=args.rank, energy=args.energy)
    if args.y is not None:
        raw, source = load_targets(args.y), f"--y {args.y!r}"
    elif points.y is not None:
        raw, source = points.y, f"DATA {args.data!r} (array y)"
    else:
        raise ValidationError(
            f"no targets: DATA {args.data!r} has no array named y and --y is not given. "
            "Add y to the .npz or pass --y FILE.csv|FILE.npy."
        )
    y = check_targets_for(raw, points.data.n, source)
    outputs = None if args.outputs == "auto" else args.outputs
    labels = None
    if args.classify:
        labels = y.astype(np.int64) if y.ndim == 1 else None
        y = one_hot(y, outputs, source)  # (n, C)
    else:
        columns = 1 if y.ndim == 1 else y.shape[1]
        if outputs is not None and outputs != columns:
            raise ValidationError(
                f"--outputs {outputs} does not match the {columns} target column(s) in {source}; "
                "use --outputs auto (or --classify for integer class labels)."
            )
    return points, y, source, labels


def run_train(args) -> int:
    """Train, report and save; returns the exit code (errors are raised to ``main``)."""
    check_output_path(args.out, "--out", (".npz",))
    if args.init_rank is not None and args.init != "kronecker":
        raise ValidationError(f"--init-rank {args.init_rank} needs --init kronecker (it counts its Kronecker terms).")
    if args.plot:
        check_output_path(args.plot, "--plot", (".png",))
    say = (lambda *_: None) if args.quiet or args.json else print
    points, y, source, labels = read_training_set(args)
    choice = solvers.choose(args, points.data, 1 if y.ndim == 1 else y.shape[1])
    if choice.name == "kernel":
        return solvers.run_kernel(args, points, y, labels, choice, _describe_points)
    data = points.data
    started = time.perf_counter()
    outputs = 1 if y.ndim == 1 else y.shape[1]
    shift = None if args.shift == "auto" else args.shift
    net = TwoLayerNet(
        data.dims, width=args.width, outputs=outputs, shift=shift, seed=args.seed, init=args.init,
        init_rank=args.init_rank,
    )  # fmt: skip
    trainer = KronSGD(
        net, data, y, lr=args.lr, batch_size=args.batch, seed=args.seed, gram=args.gram,
        dtype=np.dtype(args.dtype), workers=args.workers, fired=args.fired, memory_budget=args.memory_budget,
    )  # fmt: skip
    setup_seconds = time.perf_counter() - started
    say(_describe_points(args.data, points))  # after the trainer has accepted every option
    say(choice.describe())
    say(
        f"  net: m = {net.width} neurons, {net.outputs} output(s), shift b = {net.shift:.4g}, {_init_text(net)}; "
        f"lr {args.lr:g}, "
        f"batch {trainer.batch_size}, {args.dtype}, Gram {trainer.gram_mode}, fired by {trainer.fired_mode}, "
        f"{args.workers} worker(s); "
        f"set up in {setup_seconds:.2f} s"
    )
    log_every = max(1, args.steps // _LOG_POINTS) if args.log_every == "auto" else args.log_every
    bar = TrainingProgress(args.steps, trainer.batch_size, net.width, progress_wanted(args.quiet))
    try:
        with bar:
            trainer.run(args.steps, log_every=log_every, callback=bar)
    except DivergenceError as exc:
        raise DivergenceError(f"{exc} Nothing was written to {args.out}.") from None
    summary = _summary(args, points, net, trainer, setup_seconds, labels) | choice.to_dict()
    net.save(args.out)
    if args.plot:
        from .plots import plot_training

        title = f"kronsgd train {args.data}: n = {data.n}, d = {data.d:,}, m = {net.width}"
        plot_training(trainer.history, net.width, net.shift, args.plot, title=title)
    if args.json:
        print(A.dump_json({"summary": summary, "history": trainer.history}))
    elif args.quiet:
        print(
            f"{args.out}: loss {summary['loss_start']:.6g} -> {summary['loss_end']:.6g} in {summary['steps']} steps, "
            f"{summary['step_ms']:.3g} ms/step"
        )
    else:
        _print_summary(summary)
    return 0


def _summary(args, points, net, trainer, setup_seconds: float, labels) -> dict:
    counters, history = trainer.counters(), trainer.history
    steps, seconds = max(1, counters["steps"]), max(trainer.train_seconds, 1e-12)
    summary = {
        "data": points.describe(),
        "targets": args.y or "y",
        "width": net.width,
        "outputs": net.outputs,
        "shift": net.shift,
        "init": net.init,
        "init_rank": net.init_rank,
        "lr": args.lr,
        "batch_size": trainer.batch_size,
        "dtype": args.dtype,
        "gram": trainer.gram_mode,
        "fired": trainer.fired_mode,
        "workers": args.workers,
        "seed": args.seed,
        "steps": counters["steps"],
        "loss_start": history[0]["loss"],
        "loss_end": history[-1]["loss"],
        "setup_seconds": setup_seconds,
        "train_seconds": trainer.train_seconds,
        "step_ms": 1e3 * trainer.train_seconds / steps,
        "samples_per_second": counters["samples"] / seconds,
        "nnz_per_step": counters["nnz"] / steps,
        "fired_fraction": history[-1]["fired"] / net.width,
        "multiply_adds_per_step": counters["multiply_adds"] / steps,
        "dense_multiply_adds_per_step": 2 * net.width * trainer.batch_size * net.d,
        "model": args.out,
        "plot": args.plot,
    }
    if labels is not None:  # training accuracy from the maintained pre-activations: no new pass over W0
        outputs = net.outputs_from_preactivations(trainer.P.astype(np.float64))  # (n, C)
        summary["train_accuracy"] = float(np.mean(np.argmax(outputs, axis=1) == labels))
    return summary


def _describe_points(path: str, points) -> str:
    data = points.data
    dims = "x".join(str(v) for v in data.dims)
    text = f"kronsgd train: {data.n:,} points of d = {data.d:,} ({dims}), rank {data.rank}, "
    if points.source == "dense":
        return text + (
            f"factored from the dense X in {path} (energy kept {points.energy:.6f}, "
            f"worst relative residual {points.residual_max:.3g})"
        )
    return text + f"factors from {path}"


def _print_summary(s: dict) -> None:
    ratio = s["dense_multiply_adds_per_step"] / max(s["multiply_adds_per_step"], 1.0)
    compared = f"{ratio:,.0f}x more" if ratio >= 2 else f"{ratio:.2g}x as much: d is too small to gain"
    print(f"final training loss {s['loss_end']:.6g} (from {s['loss_start']:.6g}) after {s['steps']:,} steps")
    if "train_accuracy" in s:
        print(f"training accuracy {100 * s['train_accuracy']:.2f}%")
    print(
        f"per step {s['step_ms']:.3f} ms ({s['samples_per_second']:,.0f} samples/s), nnz(c) {s['nnz_per_step']:,.0f}, "
        f"{100 * s['fired_fraction']:.2f}% of neurons fire per point"
    )
    print(
        f"work per step {s['multiply_adds_per_step']:.3g} multiply-adds, independent of d; "
        f"dense SGD would do {s['dense_multiply_adds_per_step']:.3g} ({compared})"
    )
    print(f"saved the model to {s['model']}")
    if s["plot"]:
        print(f"wrote {s['plot']}")


def _init_text(net) -> str:
    return f"init kronecker (K = {net.init_rank})" if net.init == "kronecker" else "init gaussian"
