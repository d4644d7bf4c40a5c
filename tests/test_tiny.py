"""Small local models: a saved tokenizer reloads (through AutoTokenizer, as users load it) to the same
encodings it was trained and used with."""

from __future__ import annotations


def test_saved_tokenizer_reloads_to_identical_encodings(fixture_items, tmp_path):
    from transformers import AutoTokenizer

    from interp.data.prompts import apply_chat, make_prompt
    from interp.organisms.tiny import build_causal_lm, train_tokenizer

    texts = [make_prompt(it, shuffle=True, seed=s).user_text for it in fixture_items for s in range(3)]
    # BBQ's Age items: multi-digit numbers and hyphens are where a GPT-2 split and Qwen2's part ways
    texts += [f"The {a}-year-old and the {b}-year-old met in {y}.\n\nWho was it?" for a, b, y in
              [(22, 78, 1999), (24, 82, 2001), (60, 18, 1985)] * 20]
    tok = train_tokenizer(texts, vocab_size=600)
    build_causal_lm(tok).save_pretrained(tmp_path)  # config.json with model_type qwen2 decides the class
    tok.save_pretrained(tmp_path)
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    # transformers loads any qwen2 folder with Qwen2Tokenizer, which rebuilds its own pre-tokenizer: ours must
    # be that one, or the model sees other tokens than it was trained on (it did, before recipe 3)
    chats = [apply_chat(tok, t) for t in texts] + ["Who's 42nd?  Can't  be\n\ndetermined!", "é café  ñ 1999"]
    assert [apply_chat(loaded, t) for t in texts] == chats[: len(texts)]
    assert loaded(chats, add_special_tokens=False)["input_ids"] == tok(chats, add_special_tokens=False)["input_ids"]
    assert loaded.padding_side == "left" and loaded.pad_token == "<|endoftext|>" and loaded.eos_token == "<|im_end|>"
    assert loaded.decode(loaded("é café  ñ 1999")["input_ids"]) == "é café  ñ 1999"
