"""What the chat platforms share: where long text is cut, the bot's stock lines, the live showing
of a bot turn, and a story started in a thread of its own.

Platform-neutral, but not core: the core (``bot/``) decides what happened; these modules are how
a chat platform shows it, so ``adapters/discord_bot`` and ``adapters/slack_app`` keep only what
their platform needs (its markup, its limits, its API calls).
"""
