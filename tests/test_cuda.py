"""The GPU paths: every stage that places tensors on a device, run on CUDA and checked against the CPU run.

Skipped where no CUDA device is visible (CI has none): run them on a GPU machine with
``pytest tests/test_cuda.py``. Each test compares the CUDA result with the CPU float32 result of the same
code on the same tiny model, so a tensor left on the wrong device, a dtype mismatch or a device-dependent
branch fails here rather than in a user's notebook."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (none visible)")

# fixtures and the letter-logit helper shared with the CPU RL tests
from test_rl_train import _letter_logits, letter_lm_dir, train_dev  # noqa: E402,F401
from interp.models.backends import as_lm


def test_load_picks_cuda_and_bf16_by_default(tiny_lm_dir):
    from interp.models.loading import load_model

    lm = load_model(str(tiny_lm_dir))
    assert lm.device.type == "cuda"
    assert next(lm.model.parameters()).dtype == (torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16)


def test_eval_on_cuda_matches_cpu(tiny_lm_dir, fixture_items):
    """Float32 on CUDA reproduces the CPU letter logits and predictions; bf16 keeps them close."""
    from interp.eval.evaluate import EvalConfig, evaluate_items
    from interp.models.loading import load_model

    cpu = load_model(str(tiny_lm_dir), device="cpu", dtype="float32")
    gpu = load_model(str(tiny_lm_dir), device="cuda", dtype="float32")
    a = _letter_logits(cpu.model, cpu.tokenizer, fixture_items)
    b = _letter_logits(gpu.model, gpu.tokenizer, fixture_items)
    torch.testing.assert_close(b, a, atol=1e-4, rtol=1e-4)
    for mode in ("logits", "generate"):
        cfg = EvalConfig(mode=mode, batch_size=8, progress=False)
        ra = evaluate_items(as_lm(cpu.model, cpu.tokenizer), fixture_items, cfg)
        rb = evaluate_items(as_lm(gpu.model, gpu.tokenizer), fixture_items, cfg)
        assert [r["letter"] for r in ra] == [r["letter"] for r in rb], mode
    half = load_model(str(tiny_lm_dir), device="cuda", dtype="bfloat16")
    c = _letter_logits(half.model, half.tokenizer, fixture_items)
    assert float(torch.corrcoef(torch.stack([a.flatten(), c.flatten()]))[0, 1]) > 0.98


@pytest.mark.parametrize("backend", ["hf", "transformer_lens", "nnsight"])
def test_backends_cache_on_cuda_matches_cpu(tiny_lm_dir, fixture_items, backend):
    """Every backend caches the same residual stream on CUDA as the HF backend does on the CPU."""
    from interp.models.backends import load_hooked
    from interp.eval.evaluate import encode_batch, render_prompts
    from interp.data.prompts import make_prompt

    ref = load_hooked(str(tiny_lm_dir), backend="hf", device="cpu", dtype="float32")
    hk = load_hooked(str(tiny_lm_dir), backend=backend, device="cuda", dtype="float32")
    assert hk.device.type == "cuda"
    names = [f"blocks.{l}.hook_resid_post" for l in range(hk.n_layers)]
    enc = encode_batch(ref.tokenizer, render_prompts(ref.tokenizer, [make_prompt(it) for it in fixture_items[:8]]),
                       "cpu")
    real = enc["attention_mask"].bool()  # [batch, pos]; left-pad positions hold nothing meaningful
    la, ca = ref.cache(enc, names, positions=-1)
    lb, cb = hk.cache(enc, names, positions=-1)  # inputs on the CPU: the backend moves them
    torch.testing.assert_close(lb.float().cpu()[real], la[real], atol=1e-4, rtol=1e-4)
    for n in names:
        assert cb[n].device.type == "cuda"
        torch.testing.assert_close(cb[n].float().cpu(), ca[n], atol=1e-4, rtol=1e-4)


def test_steering_on_cuda(tiny_lm_dir, fixture_items):
    """A CPU direction steers a CUDA model: alpha 0 and removal are exact, alpha != 0 matches the CPU."""
    from interp.models.loading import load_model
    from interp.methods.steering import steer

    cpu = load_model(str(tiny_lm_dir), device="cpu", dtype="float32")
    gpu = load_model(str(tiny_lm_dir), device="cuda", dtype="float32")
    d = cpu.model.config.hidden_size
    v = torch.randn(d, generator=torch.Generator().manual_seed(0))  # on the CPU on purpose
    items = fixture_items[:8]
    base = _letter_logits(gpu.model, gpu.tokenizer, items)
    with steer(gpu, v, layer=0, alpha=0.0):
        assert torch.equal(_letter_logits(gpu.model, gpu.tokenizer, items), base)
    with steer(gpu, v, layer=0, alpha=4.0):
        moved = _letter_logits(gpu.model, gpu.tokenizer, items)
    with steer(cpu, v, layer=0, alpha=4.0):
        moved_cpu = _letter_logits(cpu.model, cpu.tokenizer, items)
    assert not torch.allclose(moved, base)
    torch.testing.assert_close(moved, moved_cpu, atol=1e-4, rtol=1e-4)
    assert torch.equal(_letter_logits(gpu.model, gpu.tokenizer, items), base)


def test_activation_store_on_cuda_matches_cpu(tmp_path, tiny_lm_dir, fixture_items):
    """The HDF5 store written from a CUDA model holds what the CPU run writes (float32 store)."""
    import h5py

    from interp.store.activations import cache_split
    from interp.models.backends import load_hooked

    names = ["blocks.0.hook_resid_post", "blocks.1.hook_resid_post"]
    paths = {}
    for dev in ("cpu", "cuda"):
        hk = load_hooked(str(tiny_lm_dir), device=dev, dtype="float32")
        paths[dev] = cache_split(hk, fixture_items, tmp_path / f"{dev}.h5", names, dtype="float32", batch_size=8,
                                 progress=False)
    with h5py.File(paths["cpu"]) as fa, h5py.File(paths["cuda"]) as fb:
        keys = []
        fa.visit(lambda k: keys.append(k) if isinstance(fa[k], h5py.Dataset) else None)
        acts = [k for k in keys if fa[k].dtype.kind == "f" and fa[k].ndim >= 2]
        assert acts, keys
        for k in acts:
            np.testing.assert_allclose(fb[k][()], fa[k][()], atol=1e-4, rtol=1e-4, err_msg=k)


def test_grpo_on_cuda_bf16(tmp_path, letter_lm_dir, train_dev):
    """Two GRPO steps on the GPU in bf16 (TRL without use_cpu): the adapter is saved, moves the letter
    logits, and reloads to the in-memory model's logits."""
    from interp.models.loading import load_model
    from rl.train import TrainConfig, build_trainer, list_checkpoints

    cfg = TrainConfig(model=str(letter_lm_dir), out_dir=str(tmp_path / "rl"), lam=0.0, lr=3e-3, steps=2,
                      save_steps=2, logging_steps=1, device="cuda", dtype="bfloat16", max_completion_length=1,
                      progress=False)
    trainer, _ = build_trainer(cfg, items=train_dev[0])
    assert trainer.args.bf16 and not trainer.args.use_cpu
    trainer.train()
    (ck,) = list_checkpoints(tmp_path / "rl")
    base = load_model(str(letter_lm_dir), device="cuda", dtype="float32")
    tuned = load_model(str(letter_lm_dir), adapter=str(ck), device="cuda", dtype="float32")
    a = _letter_logits(base.model, base.tokenizer, train_dev[1])
    b = _letter_logits(tuned.model, tuned.tokenizer, train_dev[1])
    assert (a - b).abs().max() > 1e-3
