"""The model organisms the toolkit ships: ``weights/<name>/`` holds each one's safetensors weights, tokenizer,
``plant.json`` (what was planted and seen in training, with its dev metrics) and ``SHA256SUMS``."""
