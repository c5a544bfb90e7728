"""Who is speaking and where: the two facts every adapter hands to the core with a command."""

from __future__ import annotations

from dataclasses import dataclass, field

from bot.printable import printable


@dataclass(frozen=True, slots=True)
class ChannelRef:
    """A place where one story can run.

    A thread is its own channel, so two threads under one channel can each hold a story.
    ``workspace`` is the Discord guild or Slack team ("" where a platform has none).
    ``age_restricted`` is what the platform says of the channel now (Discord's age-restricted
    channels, Slack channels the config lists, the console if the config says so): only there may
    a story be rated mature. It is not part of the channel's identity.
    """

    platform: str
    workspace: str
    channel: str
    thread: str = ""
    age_restricted: bool = field(default=False, compare=False)

    @property
    def key(self) -> str:
        """A stable string that identifies the channel in storage and in the queue."""
        parts = [self.platform, self.workspace, self.channel]
        if self.thread:
            parts.append(self.thread)
        return ":".join(parts)

    @property
    def channel_key(self) -> str:
        """The key of the channel itself (its threads share it): where per-channel rules live,
        such as the words its moderators ban."""
        return ":".join((self.platform, self.workspace, self.channel))


@dataclass(frozen=True, slots=True)
class Actor:
    """The person behind a command.

    ``is_moderator`` is decided by the adapter from platform roles (Manage Messages on Discord,
    workspace admins on Slack); the story's starter gets the same rights from the core itself.
    """

    user_id: str
    name: str
    is_moderator: bool = False

    def __post_init__(self) -> None:
        # A display name is text people chose: it is stored with every passage they write.
        object.__setattr__(self, "name", printable(self.name))
