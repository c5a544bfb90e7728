"""Checks on what people and the bot write: the checker interface (``checker``), the word and
pattern lists (``wordlist``, ``normalise``), a Hugging Face classifier (``classifier``), an
OpenAI-compatible moderation endpoint (``moderation``), each rating's combination (``checks``) and
the gate that lets a streamed passage show only what has passed (``gate``)."""
