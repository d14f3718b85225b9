"""The Ray backend: bytes sent per update against a dense parameter server, and samples/s.

    python benchmarks/bench_ray.py            # n = 4096, m = 2048, batch 32
    python benchmarks/bench_ray.py --quick

A KronSGD update record (batch, fired rows, batch positions, coefficients) is measured from a
real run; its size depends on nnz only. A dense parameter server would ship the m × d
gradient, or at best its fired rows (rows touched × d). Both are printed for d = 2^12..2^20,
with the ratio. Then samples per second of the Ray backend against the thread engine, the
same work on the same machine (a local Ray instance with 2 CPUs), measured in alternating
repeats and reported as medians and as the ratio Ray / threads of each repeat.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import ray

from _common import log, machine_info
from kronsgd import KronSGD, TwoLayerNet
from kronsgd.cli.demo import synthetic_task


def trainer_for(data, y, args, backend: str):
    net = TwoLayerNet(data.dims, width=args.width, seed=0)
    trainer = KronSGD(net, data, y, lr=1.0, batch_size=args.batch, workers=2, backend=backend, keep_log=True, seed=1)
    trainer.run(20, log_every=0)  # warm: kernels compiled, actors started
    return trainer


def samples_per_s(trainer, args) -> float:
    started = trainer.train_seconds
    trainer.run(args.steps, log_every=0)
    return args.steps * args.batch / (trainer.train_seconds - started)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=4096)
    parser.add_argument("--width", type=int, default=2048)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=1000)  # updates per timed run(): one gather of P and alpha each
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", default="bench-out/bench_ray.json")
    args = parser.parse_args(argv)
    if args.quick:
        args.n, args.width, args.steps, args.repeats = 1024, 512, 60, 2
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    data, y = synthetic_task(args.n, (32, 32), seed=0)
    trainers = {backend: trainer_for(data, y, args, backend) for backend in ("threads", "ray")}
    rates: dict[str, list[float]] = {"threads": [], "ray": []}
    for rep in range(args.repeats):  # alternating, so that both see the same load on a shared machine
        for backend in ("threads", "ray") if rep % 2 == 0 else ("ray", "threads"):
            rates[backend].append(samples_per_s(trainers[backend], args))
        log(f"repeat {rep + 1}: threads {rates['threads'][-1]:,.0f}, Ray {rates['ray'][-1]:,.0f} samples/s")
    ratios = [r / t for r, t in zip(rates["ray"], rates["threads"], strict=True)]
    threads, on_ray = float(np.median(rates["threads"])), float(np.median(rates["ray"]))
    started = time.perf_counter()
    trainers["ray"]._ray.gather()  # what every run() ends with on Ray: P and alpha into the driver
    gather_s = time.perf_counter() - started
    records = trainers["ray"].records
    staleness = trainers["ray"].history[-1].get("staleness_mean", float("nan"))
    ray.shutdown()

    record_bytes = float(np.mean([r.nbytes for r in records]))
    rows = float(np.mean([np.unique(r.rows).size for r in records]))
    print(f"n = {args.n}, m = {args.width}, batch {args.batch}, float32; records measured from {len(records)} updates")
    print(f"bytes per update: KronSGD record {record_bytes:,.0f} B (mean; depends on nnz only)")
    print(f"{'d':>6} {'dense gradient':>15} {'fired rows':>13} {'gradient/record':>16} {'rows/record':>12}")
    table = []
    for log2d in range(12, 21, 2):
        d = 2**log2d
        gradient, fired = 4 * args.width * d, 4 * rows * d
        table.append({"d": d, "gradient_bytes": gradient, "fired_rows_bytes": fired, "record_bytes": record_bytes})
        print(f"  2^{log2d:<3} {gradient / 2**20:>12.1f} MiB {fired / 2**20:>10.1f} MiB "
              f"{gradient / record_bytes:>15,.0f}x {fired / record_bytes:>11,.0f}x")  # fmt: skip
    print(f"samples/s with 2 workers ({args.repeats} alternating repeats of {args.steps} updates, medians): "
          f"threads {threads:,.0f}, Ray {on_ray:,.0f}; Ray / threads {np.median(ratios):.2f} "
          f"(per repeat {', '.join(f'{r:.2f}' for r in ratios)}); Ray staleness mean {staleness:.1f}; "
          f"gathering P and alpha at the end of a run {1e3 * gather_s:.0f} ms")  # fmt: skip
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    result = {
        "args": vars(args), "machine": machine_info(), "bytes": table, "threads_samples_per_s": threads,
        "ray_samples_per_s": on_ray, "ray_over_threads": float(np.median(ratios)), "ratios": ratios,
        "gather_seconds": gather_s, "rates": rates, "record_bytes_per_update": record_bytes,
        "fired_rows_per_update": rows, "ray_staleness_mean": staleness,
    }  # fmt: skip
    out.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
