"""``interp cache``: write activations of a BBQ split to an HDF5 store (resumable; torchrun-aware)."""

from __future__ import annotations

import os

import click

from interp.cli.commands.common import comma_list, data_options, load_items_from_options, model_options


def _init_distributed(device: str) -> tuple[int, int, str]:
    """Under torchrun (WORLD_SIZE > 1) join the process group (nccl on GPU, gloo on CPU); returns
    (rank, world, device)."""
    import torch

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return 0, 1, device
    import torch.distributed as dist

    local = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available() and device in ("auto", "cuda") or device.startswith("cuda")
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    if use_cuda:
        torch.cuda.set_device(local)
        device = f"cuda:{local}"
    else:
        device = "cpu"
    return dist.get_rank(), world, device


@click.command("cache")
@model_options
@data_options
@click.option("--backend", type=click.Choice(["hf", "transformer_lens", "nnsight"]), default="hf", show_default=True,
              help="Hook backend; all give the same activations (hf is fastest).")
@click.option("--hooks", "hook_kinds", default="hook_resid_post", show_default=True,
              help="Comma-separated hook kinds: hook_resid_pre, hook_resid_mid, hook_resid_post, hook_attn_out, "
                   "hook_mlp_out, mlp.hook_post ...")
@click.option("--layers", default="all", show_default=True, help="all, 5, 0,4,8, 2-5, -1 (last).")
@click.option("--positions", default="last", show_default=True,
              help="'last' (last prompt token: where the answer letter is decided) or offsets such as -1,-2,-3.")
@click.option("--store-dtype", type=click.Choice(["float16", "float32"]), default="float16", show_default=True)
@click.option("--compression", type=click.Choice(["gzip", "lzf", "none"]), default="none", show_default=True,
              help="HDF5 filter. gzip saves ~30% on disk but caps a GPU run at ~0.3x a plain forward "
                   "(benchmarks/README.md); lzf saves ~1%.")
@click.option("--shuffle-options/--keep-order", default=False, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True, help="Option-shuffle seed.")
@click.option("--out", type=click.Path(), default=None,
              help="Store path (default: activations/<model>[__<adapter>]/<split>-<positions>.h5).")
@click.option("--overwrite", is_flag=True, help="Replace an existing (foreign, corrupt or finished) file.")
@click.option("--device-map", default=None, help="'auto' to spread a model too large for one GPU.")
@click.option("--remote", is_flag=True, help="nnsight only: run on NDIF (needs NDIF_API_KEY); weights stay remote.")
@click.option("--no-adapter", is_flag=True, help="With --adapter: cache the base model (adapter disabled).")
def cmd(model, adapter, device, dtype, batch_size, bbq_dir, templates_dir, part, split_file, dev_frac, split_seed,
        categories, limit, backend, hook_kinds, layers, positions, store_dtype, compression, shuffle_options, seed,
        out, overwrite, device_map, remote, no_adapter):
    """Cache activations at chosen positions for every chosen hook and layer, with per-item predictions."""
    import time

    from interp.store.activations import cache_split, default_store_path, parse_positions
    from interp.models.backends import load_hooked
    from interp.models.hooks import hook_names

    parse_positions(positions)
    rank, world, device = _init_distributed(device)
    if world > 1 and (device_map or remote):
        raise click.UsageError("--device-map/--remote cannot be combined with torchrun")
    items, split = load_items_from_options(bbq_dir, templates_dir, part, split_file, dev_frac, split_seed,
                                           categories, limit)
    hooked = load_hooked(model, adapter=adapter, backend=backend, device=device, dtype=dtype,
                         device_map=device_map, remote=remote)
    if no_adapter:
        hooked.set_adapter(False)
    names = hook_names(layers, hooked.n_layers, comma_list(hook_kinds))
    path = out or default_store_path(model, adapter if not no_adapter else None, part, positions)
    t0 = time.time()
    cache_split(hooked, items, path, names, positions=positions, dtype=store_dtype, batch_size=batch_size,
                split_hash=split.hash, shuffle_options=shuffle_options, seed=seed,
                compression=None if compression == "none" else compression, overwrite=overwrite)
    if rank == 0:
        click.echo(f"wrote {path}: {len(items)} items x {len(names)} datasets ({time.time() - t0:.1f} s, "
                   f"world size {world})")
    if world > 1:
        import torch.distributed as dist

        dist.destroy_process_group()
