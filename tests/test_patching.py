"""Activation patching (``interp.methods.patching``, ``interp.patch``, ``interp patch``) against ground truths:
the clean logits come back where they must, unread positions do nothing, a planted circuit is found where it was
planted, the grid equals TransformerLens's ``patching`` functions, and attribution patching tracks exact patching."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

import interp
from interp.data.pairs import build_pairs
from interp.methods.patching import (HOOKS, PatchingError, PreparedPair, exact_rows, logit_diff, prepare_pairs,
                                     run_patching)
from interp.models.backends import load_hooked


# ----------------------------------------------------------------------------------------------
# the shipped organism on BBQ dev pairs


@pytest.fixture(scope="module")
def organism():
    return load_hooked("organism", backend="hf", device="cpu", dtype="float32")


@pytest.fixture(scope="module")
def dev_items(bbq_dir):
    return interp.bbq.load(split="dev", bbq_dir=bbq_dir)


@pytest.fixture(scope="module")
def evidence_result(organism, dev_items):
    return run_patching(organism, build_pairs(dev_items, "evidence", limit=24, seed=3), attribution=True)


def test_role_tokens_decode_to_their_text(organism, dev_items):
    from interp.data.pairs import mention, named_order

    p = build_pairs(dev_items, "group_swap", limit=1)[0]
    (pp,) = prepare_pairs(organism.tokenizer, [p])
    dec = lambda ids, pos: organism.tokenizer.decode(ids[pos]).strip()  # noqa: E731
    first = named_order(p.clean, p.clean_evidence)[0]
    s, e = mention(p.clean.context.strip(), p.clean, first)
    assert dec(pp.clean_ids, pp.roles["name1"][0]) == p.clean.context.strip()[s:e]
    cq, kq = pp.roles["question"]
    assert dec(pp.clean_ids, cq) == p.clean.question.strip()
    assert dec(pp.corrupted_ids, kq) == p.corrupted.question.strip()
    cf, kf = pp.roles["final"]
    assert cf == [len(pp.clean_ids) - 1] and kf == [len(pp.corrupted_ids) - 1]
    assert "Answer:" in dec(pp.corrupted_ids, pp.roles["suffix"][1])
    for c, k in pp.roles.values():
        assert len(c) == len(k) > 0


def test_last_layer_final_position_reproduces_the_clean_logits(organism, evidence_result):
    L = organism.n_layers - 1
    raw = evidence_result.raw
    cell = raw[(raw.hook == "hook_resid_post") & (raw.layer == L) & (raw.role == "final")]
    assert len(cell) == 24
    np.testing.assert_allclose(cell.patched, cell.clean, atol=1e-4)
    t = evidence_result.table
    row = t[(t.hook == "hook_resid_post") & (t.layer == L) & (t.role == "final")].iloc[0]
    assert round(row.effect, 3) == 1.000 and row.n == 24
    assert (cell.clean - cell.corrupted).abs().min() > 1e-3  # the pairs do disagree, so 1.000 means something


def test_group_swap_pairs_of_different_lengths_and_option_order_also_recover_clean(organism, dev_items):
    pairs = build_pairs(dev_items, "group_swap", limit=12, seed=0)
    pp = prepare_pairs(organism.tokenizer, pairs)
    assert any(len(p.clean_ids) != len(p.corrupted_ids) for p in pp)
    assert any(p.corrupted_order != (0, 1, 2) for p in pairs)
    L = organism.n_layers - 1
    res = run_patching(organism, pairs, hooks=["hook_resid_post"], positions=["final", "options"], layers=[L],
                       attribution=False)
    raw = res.raw
    fin = raw[raw.role == "final"]
    np.testing.assert_allclose(fin.patched, fin.clean, atol=1e-4)


def test_positions_nothing_reads_afterwards_have_no_effect(organism, evidence_result):
    """At the last layer a non-final position's attention and MLP outputs (and its resid_post) feed nothing that
    reaches the answer; and the names of an evidence pair are the same tokens at the same positions in both
    prompts, before anything differs, so (causal attention) their activations are the corrupted ones already."""
    L = organism.n_layers - 1
    raw = evidence_result.raw
    unread = raw[(raw.layer == L) & (raw.role != "final") & (raw.hook != "hook_resid_pre")]
    assert set(unread.hook) == {"hook_resid_post", "hook_attn_out", "hook_mlp_out"} and len(unread) > 0
    np.testing.assert_allclose(unread.patched, unread.corrupted, atol=1e-5)
    same = raw[raw.role.isin(["name1", "name2"])]
    assert len(same) > 0
    np.testing.assert_allclose(same.patched, same.corrupted, atol=1e-5)
    # while the same cells at the final position do move the answer
    fin = raw[(raw.layer == L) & (raw.role == "final") & (raw.hook == "hook_attn_out")]
    assert (fin.patched - fin.corrupted).abs().mean() > 1.0


def test_batched_cells_equal_one_cell_per_forward(organism, dev_items):
    pairs = build_pairs(dev_items, "polarity", limit=3, seed=0)
    a = run_patching(organism, pairs, attribution=False, batch_size=1).raw
    b = run_patching(organism, pairs, attribution=False, batch_size=64).raw
    np.testing.assert_allclose(a.patched, b.patched, atol=1e-5)
    assert (a.patched - a.corrupted).abs().max() > 0.1


def test_attribution_tracks_exact_patching_on_the_organism(evidence_result):
    r = evidence_result.attribution_r
    assert r >= 0.8, f"attribution vs exact Pearson r = {r:.3f}"
    att = evidence_result.attribution.table
    assert list(att.columns[:6]) == ["layer", "hook", "position", "role", "effect", "n"]
    assert (att.n == evidence_result.table.n).all()


def test_public_api_and_plot(organism, dev_items, tmp_path):
    pairs = interp.pairs.build_pairs(dev_items, "polarity", limit=4)
    res = interp.patch(organism, pairs, hooks=["hook_resid_pre", "hook_mlp_out"], positions="question,final",
                       layers="0,-1", progress=False)
    assert isinstance(res, interp.PatchResult)
    t = res.table
    assert list(t.columns[:6]) == ["layer", "hook", "position", "role", "effect", "n"]
    assert len(t) == 2 * 2 * 2 and set(t.layer) == {0, organism.n_layers - 1}
    assert res.plot(tmp_path / "p.png").stat().st_size > 5_000
    with pytest.raises(PatchingError, match="positions must be among"):
        interp.patch(organism, pairs, positions="nowhere", progress=False)
    with pytest.raises(PatchingError, match="hooks must be among"):
        interp.patch(organism, pairs, hooks=["hook_resid_mid"], progress=False)
    with pytest.raises(PatchingError, match="metric must be one of"):
        interp.patch(organism, pairs, metric="accuracy", progress=False)


def test_cli_writes_csv_and_heatmap(tmp_path, bbq_dir):
    from click.testing import CliRunner

    from interp.cli.main import main

    out = tmp_path / "patch"
    r = CliRunner().invoke(main, ["patch", "--model", "organism", "--pairs", "evidence", "--split", "dev",
                                  "--limit", "4", "--bbq-dir", str(bbq_dir), "--device", "cpu", "--out", str(out)])
    assert r.exit_code == 0, r.output
    t = pd.read_csv(out / "patching.csv")
    assert list(t.columns[:6]) == ["layer", "hook", "position", "role", "effect", "n"]
    assert (out / "patching.png").stat().st_size > 5_000
    meta = json.loads((out / "patching.json").read_text())
    assert meta["n_pairs"] == 4 and meta["pairs"] == "evidence"
    before = (out / "patching.csv").read_bytes()
    bad = CliRunner().invoke(main, ["patch", "--model", "organism", "--pairs", "evidence", "--limit", "4",
                                    "--bbq-dir", str(bbq_dir), "--positions", "nowhere", "--out", str(out)])
    assert bad.exit_code == 1 and "Error: PatchingError: positions must be among" in bad.output
    assert (out / "patching.csv").read_bytes() == before  # nothing already written changed


# ----------------------------------------------------------------------------------------------
# a planted circuit and TransformerLens parity, on tiny Qwen2 models built here


def _per_token_pair(clean: torch.Tensor, corrupted: torch.Tensor, letters=(5, 6)) -> PreparedPair:
    T = len(clean)
    return PreparedPair("planted", ("t", "0"), clean, corrupted, {f"p{i}": ([i], [i]) for i in range(T)}, letters)


@pytest.fixture(scope="module")
def planted(tmp_path_factory, tiny_tokenizer):
    """Four layers; only layer 2 mixes positions: uniform attention (zero queries and keys) whose values read
    residual dimension 0 and write dimension 1. Dimension 0 is zero in every token's embedding but the key
    tokens' (+3 for X, -3 for Y); the unembedding of letter a is +10 e1 and of letter b -10 e1. Every other
    attention and MLP output is zero. So the answer is decided by the key token alone and moved to the final
    position in layer 2."""
    from interp.organisms.tiny import build_causal_lm

    K, X, Y, a, b = 2, 301, 302, 5, 6
    m = build_causal_lm(tiny_tokenizer, seed=1, num_hidden_layers=4, tie_word_embeddings=False)
    with torch.no_grad():
        for i, layer in enumerate(m.model.layers):
            layer.mlp.down_proj.weight.zero_()
            layer.self_attn.o_proj.weight.zero_()
        at = m.model.layers[K].self_attn
        for proj in (at.q_proj, at.k_proj, at.v_proj):
            proj.weight.zero_()
            proj.bias.zero_()
        hd = m.config.hidden_size // m.config.num_attention_heads
        at.v_proj.weight[0, 0] = 1.0  # kv head 0, its dim 0 <- residual dim 0
        group = m.config.num_attention_heads // m.config.num_key_value_heads
        for h in range(group):  # the query heads that share kv head 0 write residual dim 1
            at.o_proj.weight[1, h * hd] = 1.0
        emb = m.model.embed_tokens.weight
        emb[:, :2] = 0.0
        emb[X, 0], emb[Y, 0] = 3.0, -3.0
        m.lm_head.weight[a] = 0.0
        m.lm_head.weight[b] = 0.0
        m.lm_head.weight[a, 1], m.lm_head.weight[b, 1] = 10.0, -10.0
    d = tmp_path_factory.mktemp("planted")
    m.save_pretrained(d)
    tiny_tokenizer.save_pretrained(d)
    lm = load_hooked(str(d), backend="hf", device="cpu", dtype="float32")
    g = torch.Generator().manual_seed(0)
    clean = torch.randint(10, 300, (11,), generator=g)
    key = 4
    clean[key] = X
    corrupted = clean.clone()
    corrupted[key] = Y
    return lm, _per_token_pair(clean, corrupted, (a, b)), key, K


def test_planted_circuit_is_found_at_its_token_up_to_its_layer(planted):
    lm, pp, key, K = planted
    T = len(pp.clean_ids)
    res = run_patching(lm, [pp], positions=list(pp.roles), attribution=False)
    raw = res.raw
    assert abs(raw.clean.iloc[0] - raw.corrupted.iloc[0]) > 1.0
    pre = res.grid("hook_resid_pre")  # [layer, position]
    post = res.grid("hook_resid_post")
    expect_pre = np.zeros((lm.n_layers, T))
    expect_pre[: K + 1, key] = 1.0  # before the move the key token carries it, alone
    expect_pre[K + 1:, T - 1] = 1.0  # after it, only the final position's residual matters
    np.testing.assert_allclose(pre, expect_pre, atol=1e-4)
    expect_post = np.zeros((lm.n_layers, T))
    expect_post[:K, key] = 1.0
    expect_post[K:, T - 1] = 1.0
    np.testing.assert_allclose(post, expect_post, atol=1e-4)
    attn = res.grid("hook_attn_out")
    expect_attn = np.zeros((lm.n_layers, T))
    expect_attn[K, T - 1] = 1.0  # the one attention layer that moves it, at the position it moves it to
    np.testing.assert_allclose(attn, expect_attn, atol=1e-4)
    np.testing.assert_allclose(res.grid("hook_mlp_out"), 0.0, atol=1e-6)


def test_grid_equals_transformer_lens_patching(tiny_lm_dir):
    """Our grid, on the hf backend and on the transformer_lens backend, equals TransformerLens's own
    ``patching.get_act_patch_*`` run on the bridge of the same weights, for every layer and position."""
    from transformer_lens import patching as tlp

    hf = load_hooked(str(tiny_lm_dir), backend="hf", device="cpu", dtype="float32")
    tl = load_hooked(str(tiny_lm_dir), backend="transformer_lens", device="cpu", dtype="float32")
    g = torch.Generator().manual_seed(0)
    T = 12
    clean = torch.randint(10, 300, (T,), generator=g)
    corrupted = clean.clone()
    corrupted[3], corrupted[7] = 301, 302
    pp = _per_token_pair(clean, corrupted, (5, 6))
    layers = list(range(hf.n_layers))
    ours = {b: pd.DataFrame(exact_rows(lm, [pp], layers, HOOKS, list(pp.roles), logit_diff, batch_size=7))
            for b, lm in (("hf", hf), ("transformer_lens", tl))}
    bridge = tl.bridge
    _, cache = bridge.run_with_cache(clean[None])

    def metric(logits):
        return (logits[:, -1, 5] - logits[:, -1, 6]).sum()

    theirs = {
        "hook_resid_pre": tlp.get_act_patch_resid_pre(bridge, corrupted[None], cache, metric),
        "hook_attn_out": tlp.get_act_patch_attn_out(bridge, corrupted[None], cache, metric),
        "hook_mlp_out": tlp.get_act_patch_mlp_out(bridge, corrupted[None], cache, metric),
        "hook_resid_post": tlp.generic_activation_patch(bridge, corrupted[None], cache, metric,
                                                        patch_setter=tlp.layer_pos_patch_setter,
                                                        activation_name="resid_post",
                                                        index_axis_names=("layer", "pos")),
    }
    for backend, df in ours.items():
        for hook, grid in theirs.items():
            mine = np.zeros((hf.n_layers, T))
            sub = df[df.hook == hook]
            for r in sub.itertuples():
                mine[r.layer, int(r.role[1:])] = r.patched
            assert np.abs(mine - grid.numpy()).max() < 1e-4, (backend, hook)
        # normalized the same way, the effects agree too
        clean_m, corr_m = df.clean.iloc[0], df.corrupted.iloc[0]
        eff = (df.patched - corr_m) / (clean_m - corr_m)
        sub = df.assign(eff=eff)[df.hook == "hook_resid_pre"]
        tgrid = (theirs["hook_resid_pre"].numpy() - corr_m) / (clean_m - corr_m)
        for r in sub.itertuples():
            assert abs(r.eff - tgrid[r.layer, int(r.role[1:])]) < 1e-3
    assert np.abs(theirs["hook_resid_pre"].numpy()).max() > 0  # not a grid of zeros


def test_attribution_runs_on_the_transformer_lens_backend_and_agrees_with_hf(tiny_lm_dir, fixture_items):
    hf = load_hooked(str(tiny_lm_dir), backend="hf", device="cpu", dtype="float32")
    tl = load_hooked(str(tiny_lm_dir), backend="transformer_lens", device="cpu", dtype="float32")
    pairs = build_pairs(fixture_items, "evidence", limit=3)
    a = run_patching(hf, pairs, hooks=["hook_resid_pre", "hook_mlp_out"]).attribution.raw
    b = run_patching(tl, pairs, hooks=["hook_resid_pre", "hook_mlp_out"]).attribution.raw
    np.testing.assert_allclose(a.patched, b.patched, atol=1e-4)
    assert (a.patched - a.corrupted).abs().max() > 0


@pytest.mark.parametrize("backend", ["transformer_lens", "nnsight"])
def test_every_backend_gives_the_hf_grid(backend, organism, dev_items):
    pairs = build_pairs(dev_items, "group_swap", limit=2, seed=1)
    kw = dict(hooks=["hook_resid_pre", "hook_attn_out"], attribution=False)
    ref = run_patching(organism, pairs, **kw).raw
    other = run_patching(load_hooked("organism", backend=backend, device="cpu", dtype="float32"), pairs, **kw).raw
    assert (ref.patched - ref.corrupted).abs().max() > 0.1  # the hooks do patch
    np.testing.assert_allclose(other.patched, ref.patched, atol=1e-4)


@pytest.mark.parametrize("arch", ["gpt2", "gpt_neox", "opt", "falcon", "falcon_2ln", "llama", "gemma2"])
def test_ground_truths_on_every_architecture(arch):
    """On a tiny random model of each layout in the hook table (test_architectures' builders): the last layer's
    final residual gives the clean logits, what nothing later reads gives the corrupted ones, and the first
    differing token's embedding (resid_pre 0) carries the whole difference."""
    from test_architectures import _build, _hooked

    lm = _hooked(_build(arch), "hf")
    g = torch.Generator().manual_seed(0)
    T, key = 8, 2
    clean = torch.randint(2, 400, (T,), generator=g)
    corrupted = clean.clone()
    corrupted[key] = 401
    pp = _per_token_pair(clean, corrupted, (5, 6))
    res = run_patching(lm, [pp], positions=list(pp.roles), attribution=True)
    raw = res.raw
    L = lm.n_layers - 1
    assert abs(raw.clean.iloc[0] - raw.corrupted.iloc[0]) > 1e-4
    fin = raw[(raw.hook == "hook_resid_post") & (raw.layer == L) & (raw.role == f"p{T - 1}")]
    np.testing.assert_allclose(fin.patched, fin.clean, atol=1e-4)
    unread = raw[(raw.layer == L) & (raw.role != f"p{T - 1}") & (raw.hook != "hook_resid_pre")]
    before = raw[raw.role.isin([f"p{i}" for i in range(key)])]
    np.testing.assert_allclose(pd.concat([unread, before]).patched, pd.concat([unread, before]).corrupted, atol=1e-4)
    emb = raw[(raw.hook == "hook_resid_pre") & (raw.layer == 0) & (raw.role == f"p{key}")]
    np.testing.assert_allclose(emb.patched, emb.clean, atol=1e-4)
    assert np.isfinite(res.attribution.raw.patched).all()


# ----------------------------------------------------------------------------------------------
# the main job's patch stage


@pytest.fixture(scope="module")
def small_adapter(tmp_path_factory):
    """A random (non-zero) LoRA adapter on organism-small, standing in for the sweep's lambda-0 run."""
    from peft import LoraConfig, get_peft_model

    from interp.models.loading import load_model

    lm = load_model("organism-small", device="cpu", dtype="float32")
    torch.manual_seed(0)
    pm = get_peft_model(lm.model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"],
                                             init_lora_weights=False))
    d = tmp_path_factory.mktemp("lam0") / "checkpoint-2"
    pm.save_pretrained(d)
    return d


def _stage_ctx(tmp_path, bbq_dir, monkeypatch, adapter=None):
    from interp.pipeline.config import load_config
    from interp.pipeline.runner import Context

    monkeypatch.setenv("INTERP_BBQ_DIR", str(bbq_dir))
    cfg = load_config(preset="test", overrides=[f'run.out="{tmp_path}"', "patch.limit=4"])
    cfg["run"].update(device="cpu", dtype="float32")
    ctx = Context(cfg, tmp_path, log=lambda m: None)
    if adapter is not None:
        f = tmp_path / "rl" / "final_adapters.json"
        f.parent.mkdir(parents=True)
        f.write_text(json.dumps({"lam0_lr0.0005": str(adapter), "lam0_lr1e-06_control": str(adapter),
                                 "lam1.5_lr0.0005": str(adapter)}))
        ctx.outputs["rl_sweep"] = {"adapters": str(f)}
    return ctx


def test_patch_stage_base_and_adapter_and_report(tmp_path, bbq_dir, monkeypatch, small_adapter):
    from interp.pipeline.report_build import _patch_section
    from interp.pipeline.report import render_markdown
    from interp.pipeline.stages import STAGES, patch_adapter, stage_patch

    ctx = _stage_ctx(tmp_path, bbq_dir, monkeypatch, small_adapter)
    assert patch_adapter(ctx) == ("lam0_lr0.0005", str(small_adapter))  # lambda 0, not the control
    assert "patch" in ctx.cfg["run"]["stages"] and "patch" in STAGES["report"].after
    outs = stage_patch(ctx)
    for kind in ("evidence", "group_swap"):
        for tag in ("base", "adapter"):
            t = pd.read_csv(outs[f"csv_{kind}_{tag}"])
            fin = t[(t.hook == "hook_resid_post") & (t.layer == t.layer.max()) & (t.role == "final")]
            assert round(float(fin.effect.iloc[0]), 3) == 1.0 and int(fin.n.iloc[0]) == 4
            assert outs[f"fig_{kind}_{tag}"].stat().st_size > 5_000
    base = pd.read_csv(outs["csv_evidence_base"])
    adapted = pd.read_csv(outs["csv_evidence_adapter"])
    assert (base.clean - adapted.clean).abs().max() > 1e-3  # the adapter was on for its grid, off for the base's
    diff = pd.read_csv(outs["diff"])
    assert set(diff.pairs) == {"evidence", "group_swap"} and len(diff) == 2 * 4 * 3
    assert np.isfinite(diff.gap_base).all() and (diff.gap_base != diff.gap_adapter).any()
    np.testing.assert_allclose(diff.difference, diff.adapter - diff.base, atol=1e-9)
    assert (diff.differs == (diff.difference.abs() > ctx.cfg["patch"]["diff_threshold"])).all()
    sec = _patch_section(ctx, {k: str(v) for k, v in outs.items()})
    md = render_markdown("r", "", [sec], tmp_path)
    assert "lam0_lr0.0005" in md and "patching_evidence_adapter.png" in md and "Pearson r" in md


def test_patch_stage_without_a_sweep_patches_the_base(tmp_path, bbq_dir, monkeypatch):
    from interp.pipeline.stages import stage_patch

    ctx = _stage_ctx(tmp_path, bbq_dir, monkeypatch)
    ctx.cfg["patch"]["pairs"] = ["polarity"]
    outs = stage_patch(ctx)
    assert set(outs) == {"csv_polarity_base", "fig_polarity_base", "summary"}
    assert json.loads(outs["summary"].read_text())["adapter"] is None


def test_attribution_under_a_frozen_peft_base_equals_the_plain_model(small_adapter, dev_items):
    """PEFT freezes the base weights, so nothing upstream asks for gradients: the activations are made leaves
    where the graph would start, and the estimates equal those of the plain (trainable) model."""
    pairs = build_pairs(dev_items, "evidence", limit=2)
    kw = dict(hooks=["hook_mlp_out", "hook_resid_post"], positions="question,options,final")
    plain = run_patching(load_hooked("organism-small", device="cpu", dtype="float32"), pairs, **kw)
    peft = load_hooked("organism-small", adapter=str(small_adapter), device="cpu", dtype="float32")
    with peft.adapter_enabled(False):
        frozen = run_patching(peft, pairs, **kw)
    np.testing.assert_allclose(frozen.attribution.raw.patched, plain.attribution.raw.patched, atol=1e-4)
    assert (plain.attribution.raw.patched - plain.attribution.raw.corrupted).abs().max() > 1e-3
