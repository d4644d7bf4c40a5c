"""Steering: exact no-ops (alpha 0, after removal), positions, generate mode, PEFT adapters, backends, errors."""

import pytest
import torch

from interp.eval.evaluate import EvalConfig, encode_batch, evaluate_items, render_prompts
from interp.data.prompts import make_prompt
from interp.methods.steering import SteeringError, alpha_curve, steer
from interp.models.backends import as_lm


def _enc(lm, items):
    return encode_batch(lm.tokenizer, render_prompts(lm.tokenizer, [make_prompt(it) for it in items]), "cpu")


def _vec(d=64, seed=0):
    return torch.randn(d, generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def lora_dir(tmp_path_factory, tiny_lm_dir):
    """A LoRA adapter with random B matrices, so it changes the outputs."""
    from peft import LoraConfig, get_peft_model

    from interp.models.loading import load_model

    lm = load_model(str(tiny_lm_dir), device="cpu", dtype="float32")
    pm = get_peft_model(lm.model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    g = torch.Generator().manual_seed(1)
    for n, p in pm.named_parameters():
        if "lora_B" in n:
            p.data = torch.randn(p.shape, generator=g) * 0.5
    d = tmp_path_factory.mktemp("lora_steer")
    pm.save_pretrained(d)
    return d


def test_alpha_zero_and_removal_are_exact(tiny_lm, fixture_items):
    enc = _enc(tiny_lm, fixture_items[:6])
    m = tiny_lm.model
    with torch.no_grad():
        base = m(**enc).logits.clone()
        with steer(tiny_lm, _vec(), layer=1, alpha=0.0):
            zero = m(**enc).logits
        h = steer(m, _vec(), layer=0, alpha=6.0)
        moved = m(**enc).logits
        h.remove()
        h.remove()  # idempotent
        after = m(**enc).logits
        with steer(m, _vec(), layer=1, alpha=-3.0) as h2:
            assert h2.active
        assert not h2.active
        after2 = m(**enc).logits
    assert torch.equal(zero, base)
    assert (moved - base).abs().max() > 1e-2
    assert torch.equal(after, base) and torch.equal(after2, base)


def test_unit_normalized_and_added_at_every_position(tiny_lm, fixture_items):
    from interp.models.hooks import run_with_cache

    enc = _enc(tiny_lm, fixture_items[:2])
    name = "blocks.0.hook_resid_post"
    _, c0 = run_with_cache(tiny_lm.model, enc, [name])
    v = _vec() * 7.0
    with steer(tiny_lm.model, v, 0, 2.5):
        _, c1 = run_with_cache(tiny_lm.model, enc, [name])
    with steer(tiny_lm.model, v, 0, 2.5, normalize=False):
        _, c2 = run_with_cache(tiny_lm.model, enc, [name])
    # the saving hook is registered after the steering hook, so it sees the steered activation
    torch.testing.assert_close(c1[name] - c0[name], (2.5 * v / v.norm()).expand_as(c0[name]))
    torch.testing.assert_close(c2[name] - c0[name], (2.5 * v).expand_as(c0[name]))


def test_from_pos_and_generate_steers_new_tokens(tiny_lm, fixture_items):
    enc = _enc(tiny_lm, fixture_items[:3])
    m = tiny_lm.model
    with torch.no_grad():
        base = m(**enc).logits
        with steer(m, _vec(), 0, 8.0, from_pos=-1):
            last = m(**enc).logits
    torch.testing.assert_close(last[:, :-1], base[:, :-1])  # causal: earlier positions untouched
    assert (last[:, -1] - base[:, -1]).abs().max() > 1e-2

    seen = []
    from interp.methods.steering import steering_fn

    fn = steering_fn(_vec() * 8.0, from_pos=-1)

    def spy(x):
        y = fn(x)
        seen.append((x.shape[1], bool((y - x).abs().amax(-1).gt(0).any(0).all())))  # every position steered?
        return y

    from interp.models.hooks import hooks

    with hooks(m, {"blocks.0.hook_resid_post": spy}):
        m.generate(**enc, max_new_tokens=3, do_sample=False, min_new_tokens=3,
                   pad_token_id=tiny_lm.tokenizer.pad_token_id)
    assert seen[0][0] == enc["input_ids"].shape[1] and not seen[0][1]  # prompt pass: only the last position
    assert len(seen) == 3 and all(T == 1 and steered for T, steered in seen[1:])  # every new token


@pytest.mark.parametrize("mode", ["logits", "generate"])
def test_alpha_zero_reproduces_eval_exactly(tiny_lm, fixture_items, mode):
    items = fixture_items[:10]
    cfg = EvalConfig(mode=mode, batch_size=4, progress=False, max_new_tokens=2)
    base = evaluate_items(as_lm(tiny_lm.model, tiny_lm.tokenizer), items, cfg)
    rows = alpha_curve(tiny_lm, items, _vec(), 1, [0.0, 50.0], cfg, n_boot=0, progress=False)
    with steer(tiny_lm, _vec(), 1, 0.0):
        again = evaluate_items(as_lm(tiny_lm.model, tiny_lm.tokenizer), items, cfg)
    assert again == base
    from interp.eval.metrics import summarize

    m = summarize(base, n_boot=0, by_category=False)[0]
    for k in ("acc_ambig", "acc_disambig", "abstain_ambig", "s_AMB", "amb_commit_bias"):
        assert rows[0][k] == m[k]
    assert rows[0]["alpha"] == 0.0 and rows[1]["alpha"] == 50.0
    assert rows[0]["coverage_term"] == pytest.approx(1 - rows[0]["acc_ambig"])


def test_steering_with_adapter(tiny_lm_dir, lora_dir, fixture_items):
    from interp.models.loading import load_model

    lm = load_model(str(tiny_lm_dir), adapter=str(lora_dir), device="cpu", dtype="float32")
    enc = _enc(lm, fixture_items[:3])
    with torch.no_grad():
        base = lm.model(**enc).logits.clone()
        with steer(lm, _vec(), 1, 0.0):
            assert torch.equal(lm.model(**enc).logits, base)
        with steer(lm, _vec(), 1, 5.0):
            moved = lm.model(**enc).logits
        assert torch.equal(lm.model(**enc).logits, base)
        with lm.model.disable_adapter():
            plain = lm.model(**enc).logits
    assert (moved - base).abs().max() > 1e-2 and (plain - base).abs().max() > 1e-3


@pytest.mark.parametrize("backend", ["hf", "transformer_lens", "nnsight"])
def test_backends_agree_with_hf(tiny_lm, tiny_lm_dir, fixture_items, backend):
    from interp.models.backends import load_hooked

    hooked = load_hooked(str(tiny_lm_dir), backend=backend, device="cpu", dtype="float32")
    items = fixture_items[:6]
    cfg = EvalConfig(batch_size=3, progress=False)
    ref = alpha_curve(tiny_lm, items, _vec(), 0, [-4.0, 4.0], cfg, n_boot=0, progress=False)
    got = alpha_curve(hooked, items, _vec(), 0, [-4.0, 4.0], cfg, n_boot=0, progress=False)
    for a, b in zip(ref, got):
        assert {k: a[k] for k in ("acc_ambig", "amb_commit_bias", "s_AMB")} == \
               {k: b[k] for k in ("acc_ambig", "amb_commit_bias", "s_AMB")}
    # steered logits through the backend equal steered HF logits; the hook leaves with the block
    enc = _enc(tiny_lm, items[:3])
    with torch.no_grad(), steer(tiny_lm, _vec(), 0, 4.0):
        want = tiny_lm.model(**enc).logits
    base = hooked.forward(enc)
    with steer(hooked, _vec(), 0, 4.0):
        torch.testing.assert_close(hooked.forward(enc)[:, -1], want[:, -1], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(hooked.forward(enc), base, rtol=0, atol=0)
    # generate through the backend's own generate (KV cache, a padded batch) matches HF generate
    gcfg = EvalConfig(mode="generate", batch_size=3, progress=False, max_new_tokens=3)
    with steer(tiny_lm, _vec(), 0, 4.0, from_pos=-1):
        r_hf = evaluate_items(as_lm(tiny_lm), items[:3], gcfg)
    with steer(hooked, _vec(), 0, 4.0, from_pos=-1):
        r_b = evaluate_items(hooked, items[:3], gcfg)
    assert [r["reply"] for r in r_hf] == [r["reply"] for r in r_b]


def _recompute_greedy(lm, enc, max_new_tokens):
    """The hand-written decoding loop steering used before each backend's own generate: greedy, the whole
    sequence recomputed at every step through ``lm.forward`` (hooks apply), positions counted over real tokens,
    finished rows padded. Returns (new tokens, first-step logits)."""
    from interp.eval.evaluate import mask_position_ids

    ids, mask = enc["input_ids"], enc["attention_mask"]
    eos, pad = lm.tokenizer.eos_token_id, lm.tokenizer.pad_token_id
    done = torch.zeros(ids.shape[0], dtype=torch.bool)
    first = None
    for _ in range(max_new_tokens):
        logits = lm.forward({"input_ids": ids, "attention_mask": mask,
                             "position_ids": mask_position_ids(mask)})[:, -1]  # [batch, vocab]
        first = logits if first is None else first
        nxt = torch.where(done, torch.full_like(logits[:, 0], pad, dtype=torch.long), logits.argmax(-1))
        done = done | (nxt == eos)
        ids, mask = torch.cat([ids, nxt[:, None]], 1), torch.cat([mask, torch.ones_like(mask[:, :1])], 1)
        if bool(done.all()):
            break
    return ids[:, enc["input_ids"].shape[1]:], first


@pytest.mark.parametrize("backend", ["hf", "transformer_lens", "nnsight"])
def test_steered_generate_equals_the_recompute_loop_on_the_organism(bbq_dir, backend, monkeypatch):
    """Steering in generate mode runs each backend's own generate with its KV cache; its greedy replies equal
    those of the old full-recompute loop on the shipped organism, and the steering changes some of them."""
    import interp
    from interp.eval.evaluate import encode_batch

    monkeypatch.setenv("INTERP_BBQ_DIR", str(bbq_dir))
    lm = interp.load("organism", backend=backend, device="cpu", dtype="float32")
    items = interp.bbq.load(split="dev", limit=12)
    tok = lm.tokenizer
    v = 6.0 * _vec(lm.d_model, seed=3) / _vec(lm.d_model, seed=3).norm()
    cfg = EvalConfig(mode="generate", batch_size=6, max_new_tokens=4, progress=False, sort_by_length=False)
    plain = [r["reply"] for r in evaluate_items(lm, items, cfg)]
    for from_pos in (None, -1):
        with steer(lm, v, 1, 1.0, from_pos=from_pos, normalize=False):
            got = evaluate_items(lm, items, cfg)
        want = []
        for lo in range(0, len(items), 6):
            enc = encode_batch(tok, render_prompts(tok, [make_prompt(it) for it in items[lo:lo + 6]]), "cpu", lm)
            # the old loop restarted positions at every pass: from_pos=-1 meant "from the last prompt token on"
            pos = None if from_pos is None else enc["input_ids"].shape[1] - 1
            with steer(lm, v, 1, 1.0, from_pos=pos, normalize=False):
                new, first = _recompute_greedy(lm, enc, 4)
            want += tok.batch_decode(new, skip_special_tokens=True)
            ll = torch.tensor([r["letter_logits"] for r in got[lo:lo + 6]])
            torch.testing.assert_close(ll, first[:, [tok.encode(L, add_special_tokens=False)[0] for L in "ABC"]],
                                       rtol=0, atol=1e-4)
        assert [r["reply"] for r in got] == want
        assert want != plain  # the steering changes replies (the comparison is not vacuous)


def test_clear_errors(tiny_lm):
    with pytest.raises(SteeringError, match="hidden size is 64"):
        steer(tiny_lm, torch.ones(10), 0, 1.0)
    with pytest.raises(SteeringError, match="out of range: the model has 2 layers"):
        steer(tiny_lm.model, torch.ones(64), 2, 1.0)
    with pytest.raises(SteeringError, match="out of range"):
        steer(tiny_lm.model, torch.ones(64), -1, 1.0)
    with pytest.raises(SteeringError, match=r"vector \[d_model\]"):
        steer(tiny_lm.model, torch.ones(2, 64), 0, 1.0)
    with pytest.raises(SteeringError, match="zero direction"):
        steer(tiny_lm.model, torch.zeros(64), 0, 1.0)
    with pytest.raises(SteeringError, match="unknown hook name"):
        steer(tiny_lm.model, torch.ones(64), 0, 1.0, hook="hook_nonsense")
    # a hook whose width is not the hidden size is checked when it runs
    with pytest.raises(SteeringError, match="activation has size 192"):
        with steer(tiny_lm.model, torch.ones(64), 0, 1.0, hook="mlp.hook_post"):
            tiny_lm.model(input_ids=torch.tensor([[1, 2, 3]]))


# ---------------------------------------------------------------------------------------------------------
# ground truth on the small organism (a planted stereotyped lean)


@pytest.fixture(scope="module")
def organism(bbq_dir):
    import os

    pytest.importorskip("interp.organisms.causal_lm")
    os.environ.setdefault("INTERP_BBQ_DIR", str(bbq_dir))
    from interp.models.loading import load_model
    from interp.data.bbq import split_items

    from interp.organisms.causal_lm import SMALL_CONFIG

    lm = load_model("organism-small", device="cpu", dtype="float32")
    cats = SMALL_CONFIG.categories
    train, _ = split_items("train", bbq_dir, categories=cats, limit=1200)
    dev, _ = split_items("dev", bbq_dir, categories=cats, limit=400)
    return lm, train, dev


@pytest.mark.slow
def test_organism_probe_and_steering_ground_truth(organism):
    """The planted lean is recovered: the organism's commit-or-abstain decision (what the plant sets on ambiguous
    items) is read by a probe above the majority rate and the shuffled-label control, and steering against the
    stereotype direction built from the organism's own train-template answers lowers its held-out lean,
    monotonically in alpha (up to one commit), at every layer, within one sigma of the direction (further out, at the first two
    layers the organism commits on every ambiguous item and the ratio among its commits stops tracking alpha)."""
    from interp.methods.directions import compute_directions
    from interp.eval.metrics import summarize
    from interp.methods.probes import (ProbeConfig, abstain_labels, best_layer, collect,
                                       probe_sweep, resid_hooks, template_groups)
    from interp.methods.steering import direction_vector

    lm, train, dev = organism
    got = collect(as_lm(lm.model, lm.tokenizer), train, resid_hooks(lm.model), batch_size=48,
                                       progress=False)
    acts, recs = got.acts, got.records
    idx, y = abstain_labels(recs, "all")
    rows = probe_sweep({n: a[idx] for n, a in acts.items()}, y, template_groups(recs)[idx],
                       ProbeConfig(n_shuffles=3, n_boot=200))
    b = best_layer(rows)
    assert b["acc_lo"] > b["majority"] + 0.1 and b["acc"] > b["shuffled_max"] + 0.1, rows

    amb = [it for it in dev if it.context_condition == "ambig"]
    cfg = EvalConfig(batch_size=48, progress=False)
    alphas = [-1.0, -0.5, 0.0]
    dirs = compute_directions(acts, recs)
    for layer in range(lm.model.config.num_hidden_layers):
        d = dirs.get("stereotype", layer=layer)
        curve = alpha_curve(lm, amb, direction_vector(d, "sigma"), layer, alphas, cfg, n_boot=0, progress=False)
        bias = [r["amb_commit_bias"] for r in curve]
        one = [2 / max(1, r["n_committed_ambig"]) for r in curve]  # what one commit changes the ratio by
        # against the direction: lower, monotonically (up to one commit)
        assert all(x <= y + t for x, y, t in zip(bias, bias[1:], one)), (layer, bias)
        assert bias[0] < bias[-1] - 0.05, (layer, bias)
    unsteered = summarize(evaluate_items(as_lm(lm.model, lm.tokenizer), amb, cfg), n_boot=0, by_category=False)[0]
    assert curve[-1]["amb_commit_bias"] == unsteered["amb_commit_bias"]  # alpha 0 is exact
    assert curve[-1]["acc_ambig"] == unsteered["acc_ambig"]
    enc = _enc(lm, amb[:8])
    with torch.no_grad():
        base = lm.model(**enc).logits.clone()
        with steer(lm, d, layer, -2.0):
            assert not torch.equal(lm.model(**enc).logits, base)
        assert torch.equal(lm.model(**enc).logits, base)  # removing the hook restores logits exactly


@pytest.mark.slow
@pytest.mark.xfail(strict=True, reason="the organism's ambiguous train commits are almost all stereotyped, so the "
                   "stereotype label is near constant there and near chance on disambiguated "
                   "commits: the probe sits at the majority rate (docs/organism.md)")
def test_organism_stereotype_probe_beats_majority(organism):
    from interp.methods.probes import (ProbeConfig, best_layer, collect, probe_sweep, resid_hooks,
                                       stereotype_labels, template_groups)

    lm, train, _ = organism
    got = collect(as_lm(lm.model, lm.tokenizer), train, resid_hooks(lm.model), batch_size=48,
                                       progress=False)
    acts, recs = got.acts, got.records
    idx, y = stereotype_labels(recs, "all")
    b = best_layer(probe_sweep({n: a[idx] for n, a in acts.items()}, y, template_groups(recs)[idx],
                               ProbeConfig(n_shuffles=3, n_boot=200)))
    assert b["acc"] >= max(b["majority"], b["shuffled_max"]) + 0.03, b
