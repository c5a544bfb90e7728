"""``storybot finetune``: a LoRA adapter trained on a community's finished stories.

``examples`` reads what to learn from (finished stories in the database, plain text files),
leaves out the bot passages people turned down, splits the stories into training and held-out
ones, and frames each passage exactly as the bot's prompt would have put it: the adapter learns
the very task the bot does. ``train`` loads the base model, trains the adapter with peft,
measures the held-out loss before and after, and writes the adapter with its model card into a
folder that appears whole or not at all. ``cli`` is the command's arguments and its one-line errors.
"""
