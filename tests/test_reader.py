"""The BBQ reader build (interp.organisms.reader) on the tiny random model: the letter loss it trains, the
balanced batches, the validation part carved from the train templates, and the adapter it publishes."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch

from interp.organisms.reader import (BatchSampler, ReaderConfig, ReaderData, ReaderError, balanced_subset,
                                     build_reader, carve_validation, encode_letters, is_reader, letter_loss,
                                     load_reader_data, load_record, meets_targets, selection_score)


def _data(items, val_frac=0.34) -> ReaderData:
    from interp.data.split import make_split

    split = make_split(items, dev_frac=0.25, seed=0)
    train = split.select(items, "train")
    tr, val, vs = carve_validation(train, val_frac, 0)
    return ReaderData(train=tr, val=val, train_templates=vs.train_templates, val_templates=vs.dev_templates,
                      dev_templates=split.dev_templates, split_hash=split.hash)


def _tiny_cfg(tiny_lm_dir, **kw) -> ReaderConfig:
    base = dict(model=str(tiny_lm_dir), dtype="float32", steps=6, eval_every=3, batch_size=8, lr=1e-3,
                warmup_steps=1, lora_r=4, lora_alpha=8)
    base.update(kw)
    return ReaderConfig(**base)


def test_validation_templates_are_disjoint_from_training_and_dev(fixture_bbq_dir):
    cfg = ReaderConfig(bbq_dir=str(fixture_bbq_dir), val_items=1000)
    d = load_reader_data(cfg)
    val, tr, dev = set(d.val_templates), set(d.train_templates), set(d.dev_templates)
    assert val and tr and dev
    assert not val & tr and not val & dev and not tr & dev
    assert {it.template for it in d.train} <= tr and {it.template for it in d.val} <= val
    # every category keeps templates on each side
    assert {c for c, _ in val} == {c for c, _ in tr} == {c for c, _ in dev}


def test_validation_on_the_official_split_never_holds_a_dev_template(bbq_dir):
    from interp.data.bbq import split_items

    d = load_reader_data(ReaderConfig(bbq_dir=str(bbq_dir), val_items=200))
    dev_items, _ = split_items("dev", bbq_dir)
    dev_t = {it.template for it in dev_items}
    assert dev_t == set(d.dev_templates)
    assert not {it.template for it in d.val} & dev_t and not {it.template for it in d.train} & dev_t
    assert not set(d.val_templates) & set(d.train_templates)
    assert sum(it.context_condition == "ambig" for it in d.val) == 100


def test_balanced_batches_hold_half_ambiguous_items(fixture_items):
    amb_heavy = [it for it in fixture_items if it.context_condition == "ambig"] + \
        [it for it in fixture_items if it.context_condition != "ambig"][:4]
    s = BatchSampler(amb_heavy, 8, "condition", seed=0)
    for _ in range(10):
        b = s.next()
        assert len(b) == 8 and sum(it.context_condition == "ambig" for it in b) == 4
    u = BatchSampler(amb_heavy, 8, "none", seed=0)
    n_amb = sum(it.context_condition == "ambig" for _ in range(20) for it in u.next())
    assert n_amb > 0.75 * 160  # uniform draws follow the pool (32 of 36 ambiguous)
    with pytest.raises(ReaderError, match="both ambiguous and disambiguated"):
        BatchSampler([it for it in fixture_items if it.context_condition == "ambig"], 8, "condition")


def test_balanced_subset_halves(fixture_items):
    sub = balanced_subset(fixture_items, 10, seed=1)
    assert len(sub) == 10 and sum(it.context_condition == "ambig" for it in sub) == 5
    assert balanced_subset(fixture_items, 10, seed=1) == sub


def test_encoded_gold_is_the_gold_letter_after_shuffling(tiny_lm, fixture_items):
    from interp.data.prompts import LETTERS, make_prompt
    from interp.eval.evaluate import letter_token_ids

    tok = tiny_lm.tokenizer
    ids_l = letter_token_ids(tok)
    items = fixture_items[:12]
    ids, mask, gold = encode_letters(tok, items, ids_l, seed=7)
    assert ids.shape == mask.shape and gold.shape == (12,)
    for it, g in zip(items, gold.tolist()):
        p = make_prompt(it, shuffle=True, seed=7)
        assert g == ids_l[LETTERS.index(p.gold_letter)]
    orders = {make_prompt(it, shuffle=True, seed=7).order for it in items}
    assert len(orders) > 1  # options are shuffled


def test_letter_loss_is_the_cross_entropy_at_the_answer_position(tiny_lm, fixture_items):
    """Padded in a batch or alone, the loss is -log softmax(gold) at the last prompt token."""
    from interp.eval.evaluate import letter_token_ids

    tok, model = tiny_lm.tokenizer, tiny_lm.model
    ids_l = letter_token_ids(tok)
    items = fixture_items[:4]
    ids, mask, gold = encode_letters(tok, items, ids_l, seed=0)
    with torch.no_grad():
        batch = float(letter_loss(model, ids, mask, gold))
        alone = []
        for i in range(4):
            a, m, g = encode_letters(tok, [items[i]], ids_l, seed=0)
            logits = model(input_ids=a, attention_mask=m).logits[0, -1]
            alone.append(float(-torch.log_softmax(logits.float(), -1)[g[0]]))
    assert batch == pytest.approx(sum(alone) / 4, abs=1e-4)


def test_a_few_steps_learn_a_planted_rule(tiny_tokenizer, fixture_items, tmp_path):
    """Plant 'the gold answer is always the Unknown option' (options shuffled at every step, so only the
    option texts tell where it is): training lowers the letter loss and finds it on unseen templates."""
    from interp.organisms.tiny import build_causal_lm

    base = tmp_path / "base"
    build_causal_lm(tiny_tokenizer, seed=0, hidden_size=128, intermediate_size=256).save_pretrained(base)
    tiny_tokenizer.save_pretrained(base)
    planted = [replace(it, label=it.unknown_loc) for it in fixture_items]
    data = _data(planted)
    cfg = _tiny_cfg(base, steps=160, eval_every=40, lr=3e-3, batch_size=16, lora_r=16, lora_alpha=32)
    rec = load_record(build_reader(cfg, tmp_path / "reader", data=data).out_dir)
    losses = rec["train_losses"]
    assert len(losses) == 160
    assert sum(losses[-10:]) / 10 < sum(losses[:10]) / 10 - 0.8
    first, last = rec["curve"][0], rec["curve"][-1]
    assert last["letter_loss"] < 0.5 * first["letter_loss"]
    # the gold is Unknown on every planted item, so both accuracies are the rate of Unknown answers
    assert last["acc_ambig"] >= 0.75 and last["acc_disambig"] >= 0.75
    assert first["acc_ambig"] <= 0.5


def test_build_publishes_a_reader_that_reloads_through_interp_eval(tiny_lm_dir, fixture_items, fixture_bbq_dir,
                                                                   tmp_path):
    from click.testing import CliRunner

    from interp.cli.main import main
    from interp.models.loading import load_model
    from interp.organisms.reader import validate

    data = _data(fixture_items)
    seen = []
    res = build_reader(_tiny_cfg(tiny_lm_dir, lr=2e-3), tmp_path / "r", data=data, on_point=seen.append)
    out = res.out_dir
    assert is_reader(out) and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    rec = load_record(out)
    assert [p["step"] for p in rec["curve"]] == [0, 3, 6] == [p.step for p in seen]
    assert rec["chosen"] == max(rec["curve"], key=lambda p: (p["score"], -p["step"]))
    assert json.loads((out / "interp_base.json").read_text())["weights_hash"] == rec["weights_hash"]
    sums = (out / "SHA256SUMS").read_text()
    assert "adapter_model.safetensors" in sums and "reader.json" in sums
    # the kept adapter, reloaded, scores validation as the record says
    lm = load_model(str(tiny_lm_dir), adapter=str(out), device="cpu", dtype="float32")
    m = validate(lm.model, lm.tokenizer, data.val, 8)
    assert m["acc_disambig"] == pytest.approx(rec["chosen"]["acc_disambig"], abs=1e-6)
    assert m["acc_ambig"] == pytest.approx(rec["chosen"]["acc_ambig"], abs=1e-6)
    # and through the command line
    r = CliRunner().invoke(main, ["eval", "--model", str(tiny_lm_dir), "--adapter", str(out), "--device", "cpu",
                                  "--dtype", "float32", "--bbq-dir", str(fixture_bbq_dir), "--split", "all",
                                  "--n-boot", "10", "--out", str(tmp_path / "ev")])
    assert r.exit_code == 0, r.output
    summ = json.loads((tmp_path / "ev" / "summary.json").read_text())
    assert summ["meta"]["adapter"] == str(out)
    # an adapter for another base is refused
    other = tmp_path / "other"
    from transformers import AutoModelForCausalLM

    m2 = AutoModelForCausalLM.from_pretrained(tiny_lm_dir)
    with torch.no_grad():
        next(m2.parameters()).add_(1.0)
    m2.save_pretrained(other)
    lm.tokenizer.save_pretrained(other)
    with pytest.raises(ValueError, match="weights hash"):
        load_model(str(other), adapter=str(out), device="cpu", dtype="float32")


def test_selection_rule():
    ok = dict(acc_ambig=0.5, acc_disambig=0.7, abstain_disambig=0.1)
    assert meets_targets(ok) and selection_score(ok) == pytest.approx(0.7)
    shortcut = dict(acc_ambig=0.96, acc_disambig=0.3, abstain_disambig=0.6)
    assert not meets_targets(shortcut)
    assert selection_score(shortcut) == pytest.approx(0.3 - 0.45 - 0.06)
    assert not meets_targets(dict(ok, acc_ambig=0.2)) and not meets_targets(dict(ok, abstain_disambig=0.2))


def test_bad_settings_and_a_user_folder_are_refused(tiny_lm_dir, fixture_bbq_dir, tmp_path):
    from click.testing import CliRunner

    from interp.cli.main import main

    with pytest.raises(ReaderError, match="balance"):
        ReaderConfig(balance="bogus").validate()
    with pytest.raises(ReaderError, match="even batch_size"):
        ReaderConfig(batch_size=5).validate()
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    r = CliRunner().invoke(main, ["reader", "build", "--model", str(tiny_lm_dir), "--out", str(mine),
                                  "--bbq-dir", str(fixture_bbq_dir), "--steps", "1"])
    assert r.exit_code == 1
    assert r.output.strip().splitlines()[-1].startswith("Error: OutputDirError:")
    assert [p.name for p in mine.iterdir()] == ["notes.txt"] and (mine / "notes.txt").read_text() == "keep me"


def test_cli_builds_on_the_fixture(tiny_lm_dir, fixture_bbq_dir, tmp_path):
    from click.testing import CliRunner

    from interp.cli.main import main

    r = CliRunner().invoke(main, ["reader", "build", "--model", str(tiny_lm_dir), "--out", str(tmp_path / "r"),
                                  "--bbq-dir", str(fixture_bbq_dir), "--steps", "2", "--eval-every", "1",
                                  "--batch-size", "4", "--val-items", "8", "--dtype", "float32"])
    assert r.exit_code == 0, r.output
    assert r.output.count("val acc_ambig") == 3 and "chosen step" in r.output
    rec = load_record(tmp_path / "r")
    assert rec["config"]["steps"] == 2 and rec["n_val_items"] == 8


@pytest.mark.slow
def test_a_reader_step_on_smollm2_in_bf16_reloads_with_its_fingerprint(smollm2_dir, fixture_items, tmp_path):
    """On real weights: bfloat16 base, float32 LoRA; the published adapter reloads on the base it names and
    scores validation as its record says."""
    from interp.models.loading import fingerprint, load_model
    from interp.organisms.reader import validate

    d = _data(fixture_items)
    data = replace(d, train=d.train[:8], val=balanced_subset(d.val, 4))
    cfg = ReaderConfig(model=str(smollm2_dir), steps=1, eval_every=1, batch_size=2, lr=1e-3, dtype="bfloat16")
    res = build_reader(cfg, tmp_path / "r", data=data)
    rec = load_record(res.out_dir)
    assert rec["weights_hash"] == fingerprint(smollm2_dir)
    assert len(rec["train_losses"]) == 1 and 0 < rec["train_losses"][0] < 20
    from safetensors import safe_open

    with safe_open(str(res.out_dir / "adapter_model.safetensors"), "pt") as f:
        assert {f.get_slice(k).get_dtype() for k in f.keys()} == {"F32"}
    lm = load_model(str(smollm2_dir), adapter=str(res.out_dir), device="cpu", dtype="bfloat16")
    m = validate(lm.model, lm.tokenizer, data.val, 4)
    assert m["letter_loss"] == pytest.approx(rec["chosen"]["letter_loss"], abs=0.05)
    assert m["acc_disambig"] == rec["chosen"]["acc_disambig"]


def test_cached_top_layers_loss_equals_the_full_forward(tiny_lm, fixture_items):
    """The top-K path (bottom layers cached once, right padded; the top layers, norm and LM head on the cache)
    gives the same letter loss as the full left-padded forward `interp eval` reads, at every split point."""
    from interp.eval.evaluate import letter_token_ids
    from interp.models.layer_cache import cache_states
    from interp.organisms.reader import encode_items, top_letter_loss

    tok, model = tiny_lm.tokenizer, tiny_lm.model
    ids_l = letter_token_ids(tok)
    items = fixture_items[:6]
    ids, mask, gold = encode_letters(tok, items, ids_l, seed=3)
    seqs, golds = encode_items(tok, items, ids_l, seed=3)
    assert golds == gold.tolist() and len({len(s) for s in seqs}) > 1  # prompts of different lengths: padding matters
    with torch.no_grad():
        full = float(letter_loss(model, ids, mask, gold))
        for lo in range(model.config.num_hidden_layers):
            states = cache_states(model, seqs, lo, tok.pad_token_id, batch_size=4, progress=False)
            assert float(top_letter_loss(model, states, gold, lo)) == pytest.approx(full, abs=1e-4)


def test_top_layers_build_learns_the_planted_rule_and_reloads(tiny_tokenizer, fixture_items, tmp_path):
    """--top-layers 1 on a 2-layer model: LoRA only on the last layer, trained on the cache; it learns the
    planted 'Unknown is gold' rule, and the adapter reloads through interp eval's loader and scores validation
    as the record says (the cache path and the eval path are one model)."""
    from interp.models.loading import load_model
    from interp.organisms.reader import validate
    from interp.organisms.tiny import build_causal_lm

    base = tmp_path / "base"
    build_causal_lm(tiny_tokenizer, seed=0, hidden_size=128, intermediate_size=256,
                    num_hidden_layers=2).save_pretrained(base)
    tiny_tokenizer.save_pretrained(base)
    planted = [replace(it, label=it.unknown_loc) for it in fixture_items]
    data = _data(planted)
    cfg = _tiny_cfg(base, steps=160, eval_every=80, lr=3e-3, batch_size=16, lora_r=16, lora_alpha=32, top_layers=1,
                    train_items=20)
    out = build_reader(cfg, tmp_path / "reader", data=data).out_dir
    rec = load_record(out)
    assert rec["n_train_items"] == 20 and rec["n_train_ambig"] == 10 and rec["n_train_pool"] == len(data.train)
    acfg = json.loads((out / "adapter_config.json").read_text())
    assert acfg["layers_to_transform"] == [1]
    losses = rec["train_losses"]
    assert sum(losses[-10:]) / 10 < sum(losses[:10]) / 10 - 0.8
    last = rec["curve"][-1]
    assert last["acc_ambig"] >= 0.75 and last["acc_disambig"] >= 0.75
    lm = load_model(str(base), adapter=str(out), device="cpu", dtype="float32")
    m = validate(lm.model, lm.tokenizer, data.val, 8)
    assert m["acc_disambig"] == pytest.approx(rec["chosen"]["acc_disambig"], abs=1e-6)
    with pytest.raises(ReaderError, match="top_layers 3 is more than the model's 2 layers"):
        build_reader(replace(cfg, top_layers=3), tmp_path / "r3", data=data)
    assert not (tmp_path / "r3").exists()


def test_seeds_share_one_cache_and_differ_in_their_adapters(tiny_lm_dir, fixture_bbq_dir, fixture_items, tmp_path,
                                                           monkeypatch):
    """`interp reader build --seeds 0,1 --top-layers 1`: the bottom layers run once for both seeds, each seed
    publishes its own reader, and different seeds train different adapters on the same items."""
    from click.testing import CliRunner
    from safetensors.torch import load_file

    from interp.cli.main import main
    from interp.organisms import reader as rd

    made = []
    real = rd.cache_training_items
    monkeypatch.setattr(rd, "cache_training_items", lambda *a, **k: made.append(1) or real(*a, **k))
    r = CliRunner().invoke(main, ["reader", "build", "--model", str(tiny_lm_dir), "--out", str(tmp_path / "r"),
                                  "--seeds", "0,1", "--top-layers", "1", "--train-items", "16", "--steps", "4",
                                  "--eval-every", "2", "--batch-size", "8", "--val-items", "8", "--dtype", "float32",
                                  "--bbq-dir", str(fixture_bbq_dir), "--dev-frac", "0.25"])
    assert r.exit_code == 0, r.output
    assert made == [1]
    recs = [load_record(tmp_path / "r" / f"seed{s}") for s in (0, 1)]
    assert [rc["config"]["seed"] for rc in recs] == [0, 1] and recs[0]["n_train_items"] == recs[1]["n_train_items"] == 16
    a, b = (load_file(tmp_path / "r" / f"seed{s}" / "adapter_model.safetensors") for s in (0, 1))
    assert a.keys() == b.keys() and any(not torch.equal(a[k], b[k]) for k in a)
    assert r.output.count("reader at") == 2
    bad = CliRunner().invoke(main, ["reader", "build", "--model", str(tiny_lm_dir), "--out", str(tmp_path / "x"),
                                    "--seeds", "0,zero", "--bbq-dir", str(fixture_bbq_dir)])
    assert bad.exit_code != 0 and "not a comma-separated list of integers" in bad.output


def _answer_logits(base, adapter, merged, items):
    """Answer-position logits ``# [4, vocab]`` of the base with the adapter attached, of the merged folder, and of
    the plain base, on four prompts."""
    from interp.eval.evaluate import letter_token_ids
    from interp.models.loading import load_model

    lms = [load_model(str(base), adapter=str(adapter), device="cpu", dtype="float32"),
           load_model(str(merged), device="cpu", dtype="float32"), load_model(str(base), device="cpu", dtype="float32")]
    ids, mask, _ = encode_letters(lms[0].tokenizer, items[:4], letter_token_ids(lms[0].tokenizer), seed=0)
    with torch.no_grad():
        return tuple(lm.model(input_ids=ids, attention_mask=mask).logits[:, -1] for lm in lms)


def test_merged_reader_equals_base_plus_adapter_and_refuses_a_foreign_base(tiny_lm_dir, fixture_items, tmp_path):
    """A reader merged into its base (what `--model smollm2-bbq` loads) gives the logits of the base with the
    adapter attached; merging onto other weights is refused by fingerprint and leaves no folder."""
    from transformers import AutoModelForCausalLM

    from interp.models.readers import MERGED_RECORD, ReaderMergeError, merge_reader

    out = build_reader(_tiny_cfg(tiny_lm_dir, lr=5e-3), tmp_path / "r", data=_data(fixture_items)).out_dir
    merged = merge_reader(out, tmp_path / "merged", tiny_lm_dir)
    rec = json.loads((merged / MERGED_RECORD).read_text())
    assert rec["reader"] == "r" and rec["base_weights_hash"] == load_record(out)["weights_hash"]
    la, lb, plain = _answer_logits(tiny_lm_dir, out, merged, fixture_items)
    torch.testing.assert_close(la, lb, atol=1e-4, rtol=1e-4)
    assert (la - plain).abs().max() > 1e-3  # the adapter changed something, so the equality above means something
    other = tmp_path / "other"
    m2 = AutoModelForCausalLM.from_pretrained(tiny_lm_dir)
    with torch.no_grad():
        next(m2.parameters()).add_(1.0)
    m2.save_pretrained(other)
    with pytest.raises(ReaderMergeError, match="was trained on base weights"):
        merge_reader(out, tmp_path / "merged2", other)
    assert not (tmp_path / "merged2").exists()


def test_ship_reader_writes_checksummed_files_and_tampering_is_named(tiny_lm_dir, fixture_items, tmp_path,
                                                                    monkeypatch):
    from interp.models import readers, shipped
    from interp.models.shipped import OrganismError
    from interp.organisms.reader import ship_reader

    out = build_reader(_tiny_cfg(tiny_lm_dir), tmp_path / "r", data=_data(fixture_items)).out_dir
    monkeypatch.setattr(shipped, "SHIPPED_ROOT", tmp_path / "pkg")
    monkeypatch.setattr(readers, "SHIPPED_ROOT", tmp_path / "pkg")
    with pytest.raises(ReaderError, match="was built on"):  # a tiny-model reader is no smollm2 reader
        ship_reader(out, "smollm2-bbq")
    rec = json.loads((out / "interp_base.json").read_text())
    (out / "interp_base.json").write_text(json.dumps({**rec, "model": "smollm2"}))
    dest = ship_reader(out, "smollm2-bbq")
    assert sorted(p.name for p in dest.iterdir()) == sorted(["SHA256SUMS", "adapter_config.json",
                                                              "adapter_model.safetensors", "interp_base.json",
                                                              "reader.json"])
    assert readers.shipped_reader_dir("smollm2-bbq") == dest
    with open(dest / "adapter_model.safetensors", "ab") as f:
        f.write(b"x")
    with pytest.raises(OrganismError, match="adapter_model.safetensors does not match its sha256"):
        readers.shipped_reader_dir("smollm2-bbq")
    with pytest.raises(readers.ReaderMergeError, match="unknown reader"):
        readers.shipped_reader_dir("gpt2-bbq")


def test_shipped_smollm2_bbq_merges_onto_smollm2(smollm2_dir, fixture_items, tmp_path):
    """The shipped reader passes its checksums, merges onto the installed SmolLM2 (same fingerprint as it was
    trained on), and the merged model answers as the base with the adapter attached."""
    from interp.models.readers import merge_reader, shipped_reader_dir

    src = shipped_reader_dir("smollm2-bbq")
    rec = load_record(src)
    assert rec["config"]["model"] == "smollm2" and rec["config"]["top_layers"] > 0
    merged = merge_reader(src, tmp_path / "merged", smollm2_dir)
    la, lb, _ = _answer_logits(smollm2_dir, src, merged, fixture_items)
    torch.testing.assert_close(la, lb, atol=2e-3, rtol=1e-3)
