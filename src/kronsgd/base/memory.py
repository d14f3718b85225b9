"""The memory budget: how many bytes one array may take before kronsgd refuses to allocate it."""

from __future__ import annotations

import os

from .errors import MemoryBudgetError
from .validation import check_int

GRAM_SHARE = 0.25  # gram="auto" precomputes the (n, n) Gram matrix when it takes at most this share of the budget


def available_bytes() -> int:
    """Physical memory currently available (a conservative guess where the OS will not say)."""
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):  # pragma: no cover - non-POSIX
        return 4 * 2**30


def resolve_budget(budget, name: str = "memory_budget") -> int:
    """None means half of the memory available now; otherwise a positive byte count."""
    if budget is None:
        return available_bytes() // 2
    return check_int(budget, name, low=1)


def require(nbytes: int, budget: int, what: str, remedy: str) -> None:
    """Refuse an allocation of ``nbytes`` above ``budget`` with a message that says how to avoid it."""
    if nbytes > budget:
        raise MemoryBudgetError(
            f"{what} would take {format_bytes(nbytes)}, above the memory budget of {format_bytes(budget)}. {remedy}"
        )


def format_bytes(nbytes: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(nbytes) < 1024 or unit == "TiB":
            return f"{nbytes:.0f} {unit}" if unit == "B" else f"{nbytes:.1f} {unit}"
        nbytes /= 1024
    raise AssertionError("unreachable")
