"""Everything between a queued bot turn and a stored passage: backends, text clean-up, the queue."""
