"""What people thought of the bot's passages: votes, the fate of each passage, and what is read from them.

``signals`` says which bot passages people kept and which they turned down; ``stats`` counts
them per model and sampling setting (``storybot stats``); ``dataset`` writes them as preference
data (``storybot export-dataset``). Fine-tuning (``bot.tuning``) leaves the turned-down ones out.
"""
