"""The RL sibling: GRPO adapters trained with the BBQ reward (and its lambda variant)."""
