"""Training a ladder of SAEs that differ only in width: :func:`train_ladder` (same store, same batches, same
settings for every width; checkpoints, health.json, SAELens copies) and :func:`train_sae` (one width). The recipe
and the optimiser step are :mod:`featgraph.training.trainer`.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from featgraph.activations.store import ActivationStore
from featgraph.errors import ConfigError
from featgraph.sae import Sae
from featgraph.training.trainer import (
    INIT_RECIPE,
    TrainConfig,
    _scaled_batches,
    _Trainer,
    init_seed,
    input_statistics,
)

log = logging.getLogger("featgraph.training")


def train_ladder(
    store: ActivationStore | str | Path,
    widths: Sequence[int],
    cfg: TrainConfig | None = None,
    out_dir: str | Path | None = None,
    *,
    name_prefix: str = "sae",
    save_dtype: torch.dtype | None = None,
    saelens_dir: str | Path | None = None,
    progress: bool = True,
    controls: Sequence[tuple[int, int]] = (),
    checkpoint_dir: str | Path | None = None,
    health_acts: Any = None,
    health_note: str = "",
    config: dict[str, Any] | None = None,
) -> list[Any]:
    """Train one SAE per width on the same batches in one pass over ``store``.

    ``controls``: extra ``(width, seed)`` SAEs trained in the same pass on the same batches with another init
    seed (a same-width seed control), saved as ``<prefix>-<width>-seed<seed>`` after the ladder.
    ``checkpoint_dir``: where the resumable training state goes (see the module docstring).
    ``health_acts``: activations (a store or tensor; held-out ones where there are some) on which the training-health
    diagnostics of :mod:`featgraph.training.health` are computed and written beside every saved SAE as ``health.json``
    (``health_note`` says what the activations are); None skips them.

    Returns the saved folders when ``out_dir`` is given (``out_dir/<prefix>-<width>``, featgraph format, and a
    SAELens copy under ``saelens_dir`` when given), else the trained :class:`Sae` objects. ``out_dir`` and
    ``saelens_dir`` are checked before training and written as whole folders (:mod:`featgraph.io.output`), with
    ``config`` as ``config.json`` in ``out_dir`` when given.
    """
    cfg = cfg or TrainConfig()
    store = store if isinstance(store, ActivationStore) else ActivationStore(store)
    if not widths or any(int(w) < 1 for w in widths):
        raise ConfigError(f"widths must be positive integers, got {list(widths)}")
    if len(set(widths)) != len(widths):
        raise ConfigError(f"widths must be distinct, got {list(widths)}")
    n_tokens = cfg.n_tokens or int(cfg.epochs * store.n_tokens)
    n_steps = max(1, n_tokens // cfg.batch_size)
    if store.n_tokens < cfg.batch_size:
        raise ConfigError(
            f"{store.folder}: {store.n_tokens} tokens, fewer than one batch of {cfg.batch_size}"
        )
    for w, s in controls:
        if int(w) < 1 or int(s) == cfg.seed:
            raise ConfigError(f"a seed control needs a positive width and a seed other than {cfg.seed}, got {(w, s)}")
    outputs = _check_outputs(out_dir, saelens_dir, [store.folder, checkpoint_dir, getattr(health_acts, "folder", None)])
    torch.manual_seed(cfg.seed)
    scale, mean = input_statistics(store, cfg)
    specs = [(int(w), init_seed(cfg.seed, int(w)), None) for w in widths]
    specs += [(int(w), init_seed(int(s), int(w)), int(s)) for w, s in controls]
    trainers = [_Trainer(w, store.d_in, cfg, mean, seed=seed) for w, seed, _ in specs]
    ckpt = _Checkpoint(checkpoint_dir, cfg, store, specs) if checkpoint_dir is not None else None
    start = ckpt.load(trainers) if ckpt is not None else 0
    bar = tqdm(total=n_steps, initial=start, unit="step", disable=not progress, desc=f"train {list(widths)}")
    batches = _scaled_batches(store, cfg, n_steps * cfg.batch_size)
    for step, batch in enumerate(batches):
        if step < start:  # resuming: the batch order is seeded, so skipping replays it exactly
            continue
        frac = step / n_steps
        l1 = (
            cfg.l1_coefficient * min(1.0, frac / cfg.l1_warmup_fraction)
            if cfg.l1_warmup_fraction
            else cfg.l1_coefficient
        )
        lr = cfg.lr * min(1.0, (1.0 - frac) / cfg.lr_decay_fraction) if cfg.lr_decay_fraction else cfg.lr
        if cfg.lr_warmup_fraction:
            lr *= min(1.0, (step + 1) / (cfg.lr_warmup_fraction * n_steps))
        x = batch * scale
        resample = (
            cfg.resample_every and step > 0 and step % cfg.resample_every == 0 and frac < cfg.resample_until
        )
        for t in trainers:
            err = t.step(x, l1, lr)
            if resample:
                n = t.resample(x, err, t.gen)
                if n:
                    log.info("step %d: resampled %d dead features of width %d", step, n, t.sae.n_features)
        if step % 50 == 0:
            bar.set_postfix({f"l0_{t.sae.n_features}": round(t.last["l0"], 1) for t in trainers})
            log.debug("step %d %s", step, [t.last for t in trainers])
        if step % 500 == 0:
            log.info("step %d/%d lr %.2e l1 %.3g: %s", step, n_steps, lr, l1,
                     " ".join(f"{t.sae.n_features}:mse={t.last['mse']:.1f},l0={t.last['l0']:.1f}" for t in trainers))
        bar.update(1)
        if ckpt is not None and (step + 1) % cfg.checkpoint_every == 0 and step + 1 < n_steps:
            ckpt.save(step + 1, trainers)
    bar.close()
    log.info("step time per SAE this run: %s", ", ".join(f"{t.sae.n_features} (seed {t.init_seed}): {t.seconds:.0f} s"
                                                        for t in trainers))
    extra = {
        "train": dataclasses.asdict(cfg)
        | {"n_tokens_trained": n_steps * cfg.batch_size, "n_steps": n_steps, "input_scale": scale},
        "activation_store": {
            k: store.meta.get(k)
            for k in (
                "model",
                "hook_name",
                "context_size",
                "n_tokens",
                "exclude_bos",
                "tokens_sha256",
                "extra",
            )
        },
    }
    saes = [
        _fold_scale(t, scale, store, extra | {"init": {"recipe": INIT_RECIPE, "init_seed": t.init_seed,
                                                       "encoder": "W_enc = W_dec.T"}})
        for t in trainers
    ]
    if ckpt is not None:
        ckpt.save(n_steps, trainers)
    if out_dir is None:
        return saes
    folders = []
    with outputs[0]() as out_tmp, outputs[1]() as saelens_tmp:  # each folder replaced whole, or left as it was
        for sae, (_, _, control_seed) in zip(saes, specs, strict=True):
            name = f"{name_prefix}-{sae.n_features}" + (f"-seed{control_seed}" if control_seed is not None else "")
            sae.save(out_tmp / name, dtype=save_dtype)
            folders.append(Path(out_dir) / name)
            if saelens_tmp is not None:
                from featgraph.formats import save_saelens

                save_saelens(sae, saelens_tmp / name)
        if health_acts is not None:
            from featgraph.training.health import write_health

            for sae, folder in zip(saes, folders, strict=True):
                write_health(sae, health_acts, out_tmp / folder.name / "health.json", note=health_note)
        if config is not None:
            from featgraph.io.files import write_json

            write_json(out_tmp / "config.json", config)
    return folders


def _check_outputs(out_dir: str | Path | None, saelens_dir: str | Path | None, inputs: list[Any]) -> tuple:
    """Check ``out_dir`` and ``saelens_dir`` before training (never an input or each other, never a foreign
    folder, writable); return a context factory for each that writes it whole (a no-op yielding None if unset)."""
    import contextlib
    import functools

    from featgraph.io.output import check_output, open_output

    factories = []
    for path, other, command in ((out_dir, saelens_dir, "train"), (saelens_dir, out_dir, "train-saelens")):
        if path is None:
            factories.append(lambda: contextlib.nullcontext(None))
            continue
        label = "--out" if command == "train" else "--saelens"
        check_output(path, command=command, inputs=[*inputs, other], label=label)
        factories.append(functools.partial(open_output, path, command=command, inputs=[*inputs, other], label=label))
    return tuple(factories)


class _Checkpoint:
    """The resumable state of one :func:`train_ladder` run in ``folder/train_state.pt`` (written atomically)."""

    def __init__(self, folder: str | Path, cfg: TrainConfig, store: ActivationStore, specs: list[tuple]):
        self.path = Path(folder) / "train_state.pt"
        # what must match for a checkpoint to be resumed: the same run, not merely the same widths
        self.key = {"cfg": dataclasses.asdict(cfg), "specs": [list(s) for s in specs],
                    "store": [store.meta.get("tokens_sha256"), store.n_tokens, store.d_in]}

    def load(self, trainers: list[_Trainer]) -> int:
        if not self.path.exists():
            return 0
        st = torch.load(self.path, weights_only=True)
        if st.get("key") != self.key:
            raise ConfigError(f"{self.path}: checkpoint of another run (config, widths or store differ); "
                              "remove it or choose another checkpoint folder")
        for t, ts in zip(trainers, st["trainers"], strict=True):
            t.load_state(ts)
        log.info("resuming from %s at step %d", self.path, st["step"])
        return int(st["step"])

    def save(self, step: int, trainers: list[_Trainer]) -> None:
        from featgraph.io.files import atomic_write

        self.path.parent.mkdir(parents=True, exist_ok=True)
        state = {"key": self.key, "step": step, "trainers": [t.state() for t in trainers]}
        atomic_write(self.path, lambda p: torch.save(state, p))


def _fold_scale(t: _Trainer, scale: float, store: ActivationStore, extra: dict[str, Any]) -> Sae:
    """The trained SAE rewritten to read unscaled activations (see module docstring)."""
    src = t.sae
    cfg = dataclasses.replace(
        src.cfg,
        hook_name=store.hook_name,
        model_name=store.meta.get("model"),
        extra={**extra, "n_resampled": t.n_resampled},
    )
    tensors = {
        "W_enc": src.W_enc.detach().clone(),
        "b_enc": src.b_enc.detach() / scale,
        "W_dec": src.W_dec.detach().clone(),
        "b_dec": src.b_dec.detach() / scale,
    }
    return Sae.from_tensors(tensors, cfg, where=f"trained width {src.n_features}")


def train_sae(
    acts: ActivationStore | str | Path, width: int, cfg: TrainConfig | None = None, **kw: Any
) -> Any:
    """Train one SAE (see :func:`train_ladder`); returns the Sae, or its folder when ``out_dir`` is given."""
    return train_ladder(acts, [width], cfg, **kw)[0]
