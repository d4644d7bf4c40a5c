"""``interp reader``: build a BBQ reader (a LoRA adapter trained on gold letters) on a real model."""

from __future__ import annotations

import click

from interp.cli.commands.common import comma_list


@click.group("reader")
def cmd() -> None:
    """A BBQ reader: a LoRA adapter on a real model trained on the train split's gold letters (no planted lean)."""


@cmd.command("build")
@click.option("--model", default="smollm2", show_default=True, help="Base model: a built-in name, folder or hub id.")
@click.option("--out", type=click.Path(file_okay=False), required=True,
              help="Output folder: new, empty, or a reader to rebuild (a folder of other files is refused).")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True,
              help="LoRA initialisation, batch order and option-shuffle seed.")
@click.option("--seeds", type=str, default=None,
              help="Comma-separated seeds (e.g. 0,1,2): one reader per seed in --out/seed<N>, sharing the data "
                   "and the --top-layers cache; replaces --seed.")
@click.option("--shuffle-seed", type=click.IntRange(min=0), default=0, show_default=True,
              help="Seed of the --train-items subset and of the cached items' option shuffle.")
@click.option("--steps", type=click.IntRange(min=1), default=200, show_default=True, help="Optimizer steps.")
@click.option("--lr", type=float, default=2e-4, show_default=True, help="AdamW learning rate (constant after warmup).")
@click.option("--batch-size", type=click.IntRange(min=1), default=16, show_default=True, help="Items per step.")
@click.option("--balance", type=click.Choice(["condition", "none"]), default="condition", show_default=True,
              help="condition: half ambiguous, half disambiguated items in every batch; none: uniform.")
@click.option("--eval-every", type=click.IntRange(min=1), default=25, show_default=True,
              help="Steps between validation points of the learning curve.")
@click.option("--val-items", type=click.IntRange(min=2), default=192, show_default=True,
              help="Validation items scored at each curve point.")
@click.option("--dtype", type=click.Choice(["auto", "bfloat16", "float32"]), default="auto", show_default=True,
              help="Base weights' dtype; auto: bfloat16 where the CPU has native bf16 matmul, else float32 (LoRA "
                   "weights and optimizer state are float32).")
@click.option("--top-layers", type=click.IntRange(min=0), default=0, show_default=True,
              help="0: LoRA on every layer. K: LoRA on the top K layers only, the layers below run once per "
                   "training item (cached), so a step costs the top K layers.")
@click.option("--train-items", type=click.IntRange(min=0), default=0, show_default=True,
              help="0: every training item; N: a balanced subset of N (half ambiguous).")
@click.option("--threads", type=click.IntRange(min=1), default=None, help="torch threads.")
@click.option("--bbq-dir", envvar="INTERP_BBQ_DIR", type=click.Path(), default=None,
              help="Folder of official BBQ <Category>.jsonl files [env INTERP_BBQ_DIR].")
@click.option("--templates-dir", type=click.Path(), default=None, help="Folder of BBQ template CSVs.")
@click.option("--split-file", type=click.Path(), default=None, help="Split JSON (default: --split-seed/--dev-frac).")
@click.option("--dev-frac", type=click.FloatRange(0.0, 1.0, min_open=True, max_open=True), default=0.2,
              show_default=True)
@click.option("--split-seed", type=click.IntRange(min=0), default=0, show_default=True)
@click.option("--categories", type=str, default=None, help="Comma-separated categories (default: all).")
def build(model, out, seed, seeds, shuffle_seed, steps, lr, batch_size, balance, eval_every, val_items, dtype, top_layers, train_items,
          threads, bbq_dir, templates_dir, split_file, dev_frac, split_seed, categories):
    """Train the adapter, printing each validation point; write the adapter, interp_base.json and reader.json."""
    from interp.organisms.reader import ReaderConfig, build_reader

    cfg = ReaderConfig(model=model, seed=seed, steps=steps, lr=lr, batch_size=batch_size, balance=balance,
                       eval_every=eval_every, val_items=val_items, dtype=dtype, top_layers=top_layers,
                       train_items=train_items, shuffle_seed=shuffle_seed, threads=threads, bbq_dir=bbq_dir,
                       templates_dir=templates_dir, split_file=split_file, dev_frac=dev_frac, split_seed=split_seed,
                       categories=comma_list(categories) or None)

    def show(p):
        loss = "-" if p.train_loss is None else p.train_loss
        click.echo(f"step {p.step:5d}  items {p.items_seen:6d}  loss {loss}  letter_loss {p.letter_loss:.3f}"
                   f"  val acc_ambig {p.acc_ambig:.3f}  acc_disambig {p.acc_disambig:.3f}  abstain_disambig "
                   f"{p.abstain_disambig:.3f}  score {p.score:.3f}{'  meets targets' if p.meets_targets else ''}")

    if seeds:
        from interp.organisms.reader import build_readers

        try:
            seed_list = [int(x) for x in comma_list(seeds)]
        except ValueError:
            raise click.BadParameter(f"{seeds!r} is not a comma-separated list of integers", param_hint="--seeds")
        results = build_readers(cfg, seed_list, out, on_point=lambda s, p: (click.echo(f"seed {s}  ", nl=False),
                                                                              show(p)))
    else:
        results = [build_reader(cfg, out, on_point=show)]
    for res in results:
        c = res.chosen
        click.echo(f"reader at {res.out_dir}: chosen step {c.step} (score {c.score:.3f}, "
                   f"{'meets' if c.meets_targets else 'misses'} the targets on validation), "
                   f"{res.seconds_per_step} s/step")
