"""Deferred P maintenance: per-step time against the update window (1 = fold every step).

    python benchmarks/bench_window.py                 # n = 4096 and 16384, m = 2048, batch 32
    python benchmarks/bench_window.py --quick

Every window gives the same iterates bit for bit (a test checks it); only the memory traffic
on P and the cost of correcting the batch's columns change. Windows are measured in
alternation, several times, and the best repeat is kept, since this machine is shared.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from _common import log, machine_info
from kronsgd import KronSGD, TwoLayerNet
from kronsgd.cli.demo import synthetic_task


def step_ms(data, y, width: int, batch: int, window: int, steps: int) -> tuple[float, float]:
    trainer = KronSGD(TwoLayerNet(data.dims, width=width, seed=0), data, y, lr=1.0, batch_size=batch, window=window)
    batches = [trainer.sampler.next() for _ in range(steps + 16)]
    for b in batches[:16]:
        trainer._step(b)
    started = time.perf_counter()
    for b in batches[16:]:
        trainer._step(b)
    trainer._flush()  # the last partial window is part of the work
    seconds = time.perf_counter() - started
    c = trainer.counters()
    return 1e3 * seconds / steps, c["rows_folded"] / c["steps"]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="4096,16384", help="values of n")
    parser.add_argument("--width", type=int, default=2048)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--windows", default="1,2,4,8,16")
    parser.add_argument("--steps", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", default="bench-out/bench_window.json")
    args = parser.parse_args(argv)
    if args.quick:
        args.sizes, args.width, args.steps, args.repeats = "1024", 512, 64, 1
    windows = [int(w) for w in args.windows.split(",")]
    rows = []
    for n in (int(v) for v in args.sizes.split(",")):
        data, y = synthetic_task(n, (32, 32), seed=0)
        best = {w: (float("inf"), 0.0) for w in windows}
        for rep in range(args.repeats):
            for w in windows:
                log(f"n = {n}, window {w}, repeat {rep + 1} ...")
                best[w] = min(best[w], step_ms(data, y, args.width, args.batch, w, args.steps))
        for w in windows:
            rows.append({"n": n, "window": w, "ms_per_step": best[w][0], "rows_folded_per_step": best[w][1]})
    print(f"m = {args.width}, batch {args.batch}, float32, {args.steps} steps, best of {args.repeats}")
    print(f"{'n':>6} {'window':>6} {'ms/step':>8} {'vs window 1':>11} {'P rows written/step':>20}")
    for r in rows:
        base = next(b for b in rows if b["n"] == r["n"] and b["window"] == windows[0])["ms_per_step"]
        print(f"{r['n']:>6} {r['window']:>6} {r['ms_per_step']:>8.3f} {base / r['ms_per_step']:>10.2f}x "
              f"{r['rows_folded_per_step']:>20.0f}")  # fmt: skip
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"args": vars(args), "machine": machine_info(), "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
