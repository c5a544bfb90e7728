"""The settings of one fine-tuning run (``storybot finetune``'s options), checked before anything loads."""

from __future__ import annotations

from dataclasses import dataclass

from bot.results import UserError


@dataclass(frozen=True)
class Settings:
    epochs: int = 2
    rank: int = 8  # LoRA rank; alpha is twice it
    lr: float = 2e-4  # the peak learning rate
    context: int = 256  # tokens of prompt before each passage, frame included
    batch_tokens: int = 1024  # padded tokens per batch (an example longer than this goes alone)
    holdout: float = 0.2  # share of the stories held out (at least one)
    seed: int = 0  # the split, the batches, LoRA's first weights

    def check(self) -> None:
        """One-line ``UserError`` for a setting out of range, named as its option."""
        if self.epochs < 1:
            raise UserError("--epochs must be 1 or more.")
        if self.rank < 1:
            raise UserError("--rank must be 1 or more.")
        if not self.lr > 0:
            raise UserError("--lr must be more than 0.")
        if self.context < 1:
            raise UserError("--context must be 1 or more.")
        if self.batch_tokens < 1:
            raise UserError("--batch-tokens must be 1 or more.")
        if not 0 < self.holdout < 1:
            raise UserError("--holdout must be between 0 and 1 (a share of the stories).")
