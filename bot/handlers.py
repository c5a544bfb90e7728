"""Which method answers each command: registered where the method is written, keyed by command class.

A handler class keeps one ``Handlers`` table and marks each answering method with
``@TABLE.handles(c.Start)``. mypy checks that the method takes exactly that command class, and
``SessionManager.handle`` dispatches on ``type(command)``, so a handler never needs an
``isinstance`` of its own. ``bind`` turns a table into callables of one instance.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any, Generic, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession

from bot import commands as c
from bot.identity import Actor, ChannelRef
from bot.results import Result

Owner = TypeVar("Owner")
C = TypeVar("C", bound=c.Command)

# A handler runs inside the command's transaction and answers it (or raises UserError).
Handler = Callable[[AsyncSession, ChannelRef, Actor, C], Awaitable[Result]]
Method = Callable[[Owner, AsyncSession, ChannelRef, Actor, C], Awaitable[Result]]


class Handlers(Generic[Owner]):
    """The methods of ``Owner`` that answer commands, one per command class."""

    def __init__(self) -> None:
        self._methods: dict[type[c.Command], Method[Owner, Any]] = {}

    def handles(self, command: type[C]) -> Callable[[Method[Owner, C]], Method[Owner, C]]:
        """Decorate the method that answers ``command``."""

        def register(method: Method[Owner, C]) -> Method[Owner, C]:
            if command in self._methods:
                raise TypeError(f"{command.__name__} has two handlers")
            self._methods[command] = method
            return method

        return register

    def bind(self, owner: Owner) -> dict[type[c.Command], Handler[Any]]:
        """Each registered command class with its method, bound to ``owner``."""
        return {command: partial(method, owner) for command, method in self._methods.items()}
