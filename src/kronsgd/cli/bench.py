"""``kronsgd bench``: per-step time of KronSGD against dense baselines over d, as a table and a plot.

The measurement is ``kronsgd.cli.benchmark``; this module maps options to a ``BenchConfig`` and
prints what it returns.
"""

from __future__ import annotations

import math
import sys

from ..base.errors import ValidationError
from . import args as A
from .benchmark import ENGINES, BenchConfig, run_bench
from .files import check_output_path
from .progress import progress_wanted

_LABELS = {"kron": "kronsgd", "dense": "dense-np", "torch": "torch", "sklearn": "sklearn*"}


def add_parser(sub, formatter) -> None:
    """Register ``bench`` on the subcommand set ``sub``."""
    full, quick = BenchConfig(), BenchConfig.quick()
    p = sub.add_parser(
        "bench",
        help="time one SGD step of KronSGD against dense NumPy, PyTorch and scikit-learn over a grid of d",
        description=(
            "Per-step wall time over d = 2^k (two factors, rank 1, the demo's synthetic task): KronSGD; "
            "kronsgd's DenseSGD on materialised X and W (NumPy); the same model in PyTorch (autograd and "
            "torch.optim.SGD, skipped if torch is missing); and scikit-learn's MLPRegressor(solver='sgd') "
            "partial_fit per batch, a rough reference for a different model (ReLU without shift, biases, both "
            "layers trained). All float32, same n, m, batch and shift."
        ),
        formatter_class=formatter,
    )

    def sized(name, kind, help_text):
        a, b = getattr(full, name), getattr(quick, name)
        extra = f"; {b} with --quick" if a != b else ""
        p.add_argument(
            f"--{name.replace('_', '-')}", type=kind, default=None, help=f"{help_text} (default: {a}{extra})"
        )

    p.add_argument("--quick", action="store_true", help="a smaller grid and sizes, well under a minute")
    sized("min_log2d", A.nonnegative_int, "smallest d is 2^this")
    sized("max_log2d", A.nonnegative_int, "largest d is 2^this; dense engines are skipped where X and W do not fit")
    sized("n", A.positive_int, "training points")
    sized("width", A.positive_int, "hidden neurons m")
    sized("batch", A.positive_int, "batch size |S|")
    sized("steps", A.positive_int, "timed KronSGD steps per d")
    p.add_argument(
        "--dense-steps",
        type=A.positive_int,
        default=None,
        help="timed steps per dense engine (default: 10 to 3 as d grows)",
    )
    p.add_argument("--skip", default="", help=f"comma-separated engines not to run, among {', '.join(ENGINES[1:])}")
    p.add_argument(
        "--threads",
        type=A.positive_int,
        default=None,
        help="BLAS and PyTorch threads for every engine (default: the libraries' own, usually all cores)",
    )
    p.add_argument("--seed", type=A.nonnegative_int, default=0, help="seed of the task and the batches")
    p.add_argument("--plot", metavar="PNG", help="write per-step time against d (log-log) to this .png")
    p.add_argument("--json", action="store_true", help="print the full results as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress lines; print only the result")
    p.set_defaults(handler=run_bench_command)


def config_from(args) -> BenchConfig:
    """The BenchConfig for the options: --quick or the full defaults, overridden by each given option."""
    skip = [s.strip() for s in args.skip.split(",") if s.strip()]
    unknown = [s for s in skip if s not in ENGINES[1:]]
    if unknown:
        raise _usage(f"--skip: unknown engine(s) {', '.join(unknown)}; choose among {', '.join(ENGINES[1:])}")
    given = {
        k: getattr(args, k)
        for k in ("min_log2d", "max_log2d", "n", "width", "batch", "steps", "dense_steps")
        if getattr(args, k) is not None
    }
    given["seed"], given["threads"] = args.seed, args.threads
    given["engines"] = tuple(e for e in ENGINES if e not in skip)
    config = BenchConfig.quick(**given) if args.quick else BenchConfig(**given)
    if config.min_log2d > config.max_log2d:
        raise _usage(f"--min-log2d ({config.min_log2d}) must not exceed --max-log2d ({config.max_log2d})")
    if config.min_log2d < 2 or config.max_log2d > 26:
        raise _usage("--min-log2d and --max-log2d must lie in [2, 26] (d from 4 to 2^26)")
    if config.batch > config.n:
        raise _usage(f"--batch ({config.batch}) must not exceed --n ({config.n})")
    return config


def _usage(message: str) -> ValidationError:
    return ValidationError(message)


def run_bench_command(args) -> int:
    """Run the benchmark, print the table (or JSON) and write the plot; returns the exit code."""
    if args.plot:
        check_output_path(args.plot, "--plot", (".png",))
    config = config_from(args)
    live = progress_wanted(args.quiet)

    def on_row(row):
        if live:
            print(f"  d = 2^{row['log2d']}: " + _row_text(row), file=sys.stderr, flush=True)

    if live:
        print(f"kronsgd bench: d = 2^{config.min_log2d} .. 2^{config.max_log2d}", file=sys.stderr, flush=True)
    result = run_bench(config, on_row=on_row)
    if args.plot:
        from .plots import plot_bench

        threads = f", {config.threads} thread(s) each" if config.threads else ""
        title = f"SGD step time against d (n = {config.n}, m = {config.width}, batch {config.batch}, float32{threads})"
        plot_bench(result["rows"], args.plot, title=title)
    result["plot"] = args.plot
    if args.json:
        print(A.dump_json(result))
    else:
        print_table(result)
    return 0


def _row_text(row: dict) -> str:
    parts = [f"{_LABELS[e]} {row[e + '_ms']:.3g} ms" for e in ENGINES if f"{e}_ms" in row]
    return ", ".join(parts)


def print_table(result: dict) -> None:
    """The benchmark as a table: per-step ms of each engine and its ratio to KronSGD."""
    rows, config, machine = result["rows"], result["config"], result["machine"]
    engines = [e for e in config["engines"] if e != "kron"]
    head = ["d", "dims", "kronsgd ms"] + [f"{_LABELS[e]} ms" for e in engines] + [f"{_LABELS[e]}/kron" for e in engines]
    widths = [6, 9, 11] + [12] * len(engines) + [13] * len(engines)
    print(" ".join(h.rjust(w) for h, w in zip(head, widths, strict=True)))
    for r in rows:
        cells = [f"2^{r['log2d']}", "x".join(map(str, r["dims"])), _ms(r.get("kron_ms"))]
        cells += [_ms(r.get(f"{e}_ms")) for e in engines]
        cells += [_ratio(r.get(f"{e}_over_kron")) for e in engines]
        print(" ".join(c.rjust(w) for c, w in zip(cells, widths, strict=True)))
    for r in rows:
        for e in engines:
            if f"{e}_note" in r and "not installed" not in r[f"{e}_note"]:
                print(f"  d = 2^{r['log2d']}: {_LABELS[e]} {r[f'{e}_note']}")
    for note in result["notes"]:
        print(f"note: {note}")
    load = machine.get("loadavg_1min")
    torch = f"{machine['torch']}" if machine["torch"] else "-"
    threads = f"{machine['threads']} thread(s) per engine" if machine.get("threads") else "default threads"
    print(
        f"machine: {machine['cpus_usable']} CPUs usable, {machine['processor']}, numpy {machine['numpy']}, "
        f"torch {torch}, sklearn {machine['sklearn'] or '-'}, {threads}"
        + (f"; 1-min load {load:.2f} before the run" if load is not None else "")
    )
    if result.get("plot"):
        print(f"wrote {result['plot']}")


def _ms(value) -> str:
    if value is None or not math.isfinite(value):
        return "-"
    return f"{value:.3f}" if value < 10 else f"{value:.1f}"


def _ratio(value) -> str:
    if value is None or not math.isfinite(value):
        return "-"
    return f"{value:.2f}x" if value < 10 else f"{value:,.0f}x"
