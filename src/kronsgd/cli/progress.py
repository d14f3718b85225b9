"""The command line's live progress bar: a ``run(callback=...)`` hook drawn with rich.

Library code never prints; the CLI builds one of these and hands it to ``trainer.run`` as
the callback. It draws only on an interactive terminal and never under ``--quiet``.
"""

from __future__ import annotations

import math
import sys


def progress_wanted(quiet: bool, stream=None) -> bool:
    """Draw a bar only when not quiet and both stdout and the bar's stream are terminals."""
    stream = sys.stderr if stream is None else stream
    return not quiet and _isatty(sys.stdout) and _isatty(stream)


def _isatty(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # closed or replaced streams
        return False


class TrainingProgress:
    """A progress bar over SGD steps showing loss, samples/s and the fired fraction.

    Use as a context manager and pass the instance as ``callback`` to ``trainer.run``; it
    is called with every history record ``entry`` (keys step, loss, fired, step_seconds).

    Parameters
    ----------
    total : int
        Steps of the run.
    batch_size : int
        Points per step, to turn seconds per step into samples per second.
    width : int
        Hidden neurons m, to turn fired neurons per point into a fraction.
    enabled : bool
        False makes every method a no-op (quiet runs, pipes, tests).
    console : rich.console.Console, optional
        Where to draw; default a console on stderr.
    """

    def __init__(self, total: int, batch_size: int, width: int, enabled: bool, console=None):
        self.total, self.batch_size, self.width = total, batch_size, width
        self.enabled = enabled
        self._console = console
        self._bar = None
        self._task = None
        self._first_step: int | None = None

    def __enter__(self) -> TrainingProgress:
        if not self.enabled:
            return self
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        console = self._console or Console(file=sys.stderr)
        self._bar = Progress(
            TextColumn("[bold]training"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]}"),
            TextColumn("{task.fields[speed]} samples/s"),
            TextColumn("fired {task.fields[fired]}"),
            TimeRemainingColumn(),
            console=console,
        )
        self._bar.start()
        self._task = self._bar.add_task("train", total=self.total, loss="-", speed="-", fired="-")
        return self

    def __call__(self, trainer, entry: dict) -> None:
        if self._bar is None:
            return
        if self._first_step is None:
            self._first_step = entry["step"]
        seconds = entry.get("step_seconds", math.nan)
        speed = self.batch_size / seconds if seconds and math.isfinite(seconds) and seconds > 0 else math.nan
        self._bar.update(
            self._task,
            completed=entry["step"] - self._first_step,
            loss=f"{entry['loss']:.4g}",
            speed="-" if math.isnan(speed) else f"{speed:,.0f}",
            fired=f"{100 * entry['fired'] / self.width:.2f}%",
        )

    def __exit__(self, *exc) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
