"""Progress bars for the commands that can take long in a terminal (preparing a model, exporting or
importing a large story, training an adapter).

Each bar goes to stderr, and only when stderr is a terminal (tqdm's ``disable=None``): a command
piped into a file, run by a service manager, or under the tests writes no bar at all, so logs and
stdout stay as they were. stderr is looked up when the bar is made, so a redirected one counts.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from types import TracebackType
from typing import Any

from tqdm import tqdm

__all__ = ["Stages", "progress_bar"]


def progress_bar(*, total: int, desc: str, unit: str, leave: bool = True) -> tqdm[Any]:
    """A bar of ``total`` ``unit``s on stderr, shown only when stderr is a terminal."""
    return tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, disable=None, leave=leave, dynamic_ncols=True)


class Stages:
    """A bar over the named steps of one task whose steps cannot count their own work (a
    transaction, a renderer, a library's loader): ``step(name)`` marks the steps before it done and
    shows the one beginning; leaving the block without an error completes the bar, which then
    disappears (the command prints its own last line)."""

    def __init__(self, desc: str, names: Sequence[str]) -> None:
        self._names = tuple(names)
        self._bar = progress_bar(total=len(self._names), desc=desc, unit="step", leave=False)

    def step(self, name: str) -> None:
        self._bar.update(self._names.index(name) - self._bar.n)
        self._bar.set_postfix_str(name)

    def __enter__(self) -> Stages:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        if kind is None:
            self._bar.update(len(self._names) - self._bar.n)
        self._bar.close()
