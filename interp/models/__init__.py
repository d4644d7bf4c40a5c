"""Models: loading with fingerprints and no side effects (loading), TransformerLens-named hooks on every architecture (hooks), the hf / transformer_lens / nnsight backends (backends)."""
