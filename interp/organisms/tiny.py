"""Small local models: a byte-level BPE tokenizer with a ChatML template, and Qwen2 configs built from data.

Nothing here touches a hub. The organism and every test model are made from these pieces, so hook paths
are the real Qwen2 ones (``model.layers.{l}.mlp``...)."""

from __future__ import annotations

import json
from importlib import resources
from typing import Iterable

import torch

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
# The pre-tokenizer split of Qwen2 (as transformers' Qwen2Tokenizer has it)
QWEN2_PRETOKENIZE_REGEX = (r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|"""
                           r"""\s*[\r\n]+|\s+(?!\S)|\s+""")


def train_tokenizer(texts: Iterable[str], vocab_size: int = 2048):
    """Train a byte-level BPE tokenizer (GPT-2/Qwen style) and wrap it as a HF fast tokenizer with a
    ChatML chat template, ``<|endoftext|>`` as pad and left padding (where the answer position is -1)."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    # Qwen2's own normalizer and pre-tokenizer: transformers (5.x) loads any model_type "qwen2" folder with
    # Qwen2Tokenizer, which rebuilds exactly these around the saved vocab and merges, so the reloaded
    # tokenizer encodes exactly as the one the model was trained with (a GPT-2 ByteLevel split did not).
    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2_PRETOKENIZE_REGEX), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    hf = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=["<|im_start|>"],
        padding_side="left",
        model_max_length=2048,
    )
    hf.chat_template = CHATML_TEMPLATE
    return hf


def qwen2_config(name: str):
    """A Qwen2.5 config shipped as data in this package (no hub): '0.5B' or '3B-Instruct'."""
    from transformers import Qwen2Config

    fname = {"0.5B": "qwen2.5-0.5b.json", "3B-Instruct": "qwen2.5-3b-instruct.json"}[name]
    data = json.loads(resources.files("interp.pipeline.configs").joinpath(fname).read_text())
    return Qwen2Config(**data)


def tiny_qwen2_config(vocab_size: int, **overrides):
    """A Qwen2 config small enough to train on 2 CPU cores in minutes."""
    from transformers import Qwen2Config

    kw = dict(
        vocab_size=vocab_size,
        hidden_size=64,
        intermediate_size=192,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        rope_theta=10000.0,
        tie_word_embeddings=True,
        use_sliding_window=False,
    )
    kw.update(overrides)
    return Qwen2Config(**kw)


def build_causal_lm(tokenizer, seed: int = 0, **overrides):
    """A randomly initialised Qwen2ForCausalLM sized by ``tiny_qwen2_config`` (overrides pass through)."""
    from transformers import Qwen2ForCausalLM

    cfg = tiny_qwen2_config(len(tokenizer), **overrides)
    cfg.pad_token_id = tokenizer.pad_token_id
    cfg.eos_token_id = tokenizer.eos_token_id
    cfg.bos_token_id = None
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(cfg)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    return model.eval()
