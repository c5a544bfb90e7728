"""Text that is safe to store and show anywhere: no control characters but newline and tab.

ANSI escape sequences, a bell or a carriage return in a title or passage would be stored raw
and later printed raw by a terminal (the console, ``storybot list``), clearing the screen or
retitling the window, and they mean nothing in a Discord or Slack message either. Everything
people write passes through :func:`printable` where it enters the core (the grammar's commands
and the names of the people who write), and the model's output through the same class of
characters, so no platform or file ever carries them.
"""

from __future__ import annotations

import re

# C0 controls but tab (\x09) and newline (\x0a), DEL, and the C1 controls (which include NEL).
CONTROL_CHARACTERS = "\x00-\x08\x0b-\x1f\x7f-\x9f"
_CONTROLS = re.compile(f"[{CONTROL_CHARACTERS}]")


def printable(text: str) -> str:
    """``text`` with line ends as ``\\n`` and every other control character removed."""
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    return _CONTROLS.sub("", text)
