"""storybot's platform-neutral core: commands, story rules, prompts, generation and export.

Nothing in this package imports from ``adapters``: platforms depend on the core, never the reverse.
"""
