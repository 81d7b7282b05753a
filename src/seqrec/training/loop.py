"""Training: the loop, validation with early stopping, resumable checkpoints, progress, plots; the
options (``TrainConfig``) live in ``seqrec.config`` and are re-exported here.

Batches come from ``seqrec.training.batches`` (length-bucketed, cropped, built with index arithmetic); the
loss reads real positions only and is summed over them and divided by the mean real positions per
optimizer step (one constant, so every position weighs the same in every batch, and
``grad_accum=2, batch_size=64`` takes the same steps as ``batch_size=128``).

The checkpoint (``seqrec.training.checkpoint``) is one safetensors file with JSON metadata, rewritten
atomically after every epoch (and every ``checkpoint_every_steps`` optimizer steps).

Under several processes (``nproc``, torchrun) the same loop runs in each, through the collectives of
``seqrec.training.distributed`` (its docstring says how batches, negatives and writing are shared); in one process
they are the identity.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from seqrec.config import CHOICES, DEFAULT_NEGATIVES, LOSSES, TrainConfig, TrainResult  # noqa: F401  (re-exported)
from seqrec.data.split import LeaveOneOut
from seqrec.errors import SeqrecError
from seqrec.evaluation.evaluator import EvalConfig, evaluate
from seqrec.evaluation.report import METRICS
from seqrec.files import CHECKPOINT, CONFIG, RESULT, SUMMARY, WEIGHTS, atomic_write_text, read_marker, write_marker
from seqrec.publish import check_output_folder
from seqrec.training.batches import Batches
from seqrec.training.checkpoint import load_checkpoint, restore_checkpoint, save_checkpoint
from seqrec.training.distributed import Solo, join
from seqrec.training.objective import Objective
from seqrec.training.optim import _OnDevice, _optimizer, clip_grad_norm, lr_factor, resolve_device

_RESUME_MAY_CHANGE = {"epochs", "patience", "quiet", "device", "threads", "compile", "eval_max_users",
                      "checkpoint_every_steps", "eval_every", "nproc"}


class TrainingDiverged(SeqrecError):
    """The loss became NaN or infinite; the last good checkpoint is left as it was."""


# ----------------------------------------------------------------------------- training
@dataclass
class RunState:
    """Where a run is: saved in every checkpoint's metadata and restored from it (JSON-able)."""

    epoch: int = 0  # epochs finished
    step_in_epoch: int = 0  # micro-batches of the current epoch done
    global_step: int = 0  # optimizer steps
    epoch_seconds: float = 0.0  # seconds of the current epoch so far
    best_metric: float | None = None  # best validation NDCG@10
    best_epoch: int = 0
    best_valid: dict[str, float] = field(default_factory=dict)
    bad_evals: int = 0  # validations since the best one
    history: list[dict[str, Any]] = field(default_factory=list)  # one row per epoch
    finished: bool = False
    seconds: float = 0.0  # training and validation
    train_seconds: float = 0.0

    def restore(self, meta: dict[str, Any]) -> None:
        for f in fields(self):
            if f.name in meta:
                setattr(self, f.name, meta[f.name])


class Run:
    """One training run: its objects, its state (``RunState``) and its checkpoint."""

    def __init__(self, model: torch.nn.Module, loo: LeaveOneOut, cfg: TrainConfig, out_dir: str | Path | None,
                 group: Solo | None = None, resume: bool = False) -> None:
        if model.n_items != loo.data.n_items:
            raise SeqrecError(f"the model has {model.n_items} items but the data set has {loo.data.n_items}")
        self.group = group = group or Solo(resolve_device(cfg.device))  # rank 0 alone writes
        self.device = device = group.device
        if cfg.precision == "fp16" and device.type == "cpu":
            raise SeqrecError("train config: precision 'fp16' needs a GPU; use 'bf16' or 'fp32' on the CPU")
        self.threads = cfg.threads or (group.threads() if device.type == "cpu" else None)
        self.out = Path(out_dir) if out_dir is not None else None
        self.ckpt = self.out / CHECKPOINT if self.out is not None else None
        if self.out is not None:  # before any work: a file, '.', an unwritable parent, a folder that is not seqrec's
            group.agree(lambda: check_output_folder(self.out, "model", force=True))
            if resume:  # before the folder is made: a folder that never held a run has nothing to continue
                out = self.out
                group.agree(lambda: _held_a_run(out))
        self.model, self.loo, self.cfg = model.to(device), loo, cfg
        self.data = Batches(loo, model.max_len, cfg)
        self.objective = Objective(cfg, model.n_items, loo.train().counts(model.n_items))
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.opt = _optimizer(model, cfg, device)
        self.ddp = group.wrap(model)  # DistributedDataParallel under several processes
        self.fwd = torch.compile(self.ddp, dynamic=True) if cfg.compile else self.ddp
        total = self.data.steps_per_epoch * cfg.epochs  # optimizer steps
        w = cfg.warmup_steps
        warmup = int(round(w * total)) if isinstance(w, float) else w
        self.clock = 0.0  # seconds of training so far, when there is a time limit
        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, lambda s: lr_factor(
            s, warmup, total, cfg.schedule, self.clock / cfg.time_limit if cfg.time_limit else None))
        self.scaler = torch.amp.GradScaler(device.type, enabled=cfg.precision == "fp16")
        amp = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(cfg.precision)
        self.autocast = (lambda: torch.autocast(device.type, dtype=amp)) if amp else contextlib.nullcontext
        self.scorer = model if device.type == "cpu" else _OnDevice(model, device)
        self.st = RunState()
        self.loss_sum = torch.zeros((), dtype=torch.float64, device=device)
        self.best_state: dict[str, torch.Tensor] | None = None
        if self.out is not None:  # created (with seqrec's marker) only once the run is set up
            group.agree(self._make_folder)

    def _make_folder(self) -> None:
        try:
            self.out.mkdir(parents=True, exist_ok=True)
            if read_marker(self.out) is None:
                write_marker(self.out, "model")
        except OSError as e:
            raise SeqrecError(f"cannot write the run folder {self.out}: {e.strerror or e}") from e

    # ------------------------------------------------------------------ checkpoint
    def save(self) -> None:
        """Rank 0 writes; every rank calls it (the loss so far and the generator states are gathered)."""
        if self.ckpt is not None:
            extra = {"loss_sum": self.group.sum(self.loss_sum).reshape(1), **self.group.rng_states(self.device)}
            if not self.group.main:
                return
            meta = {**asdict(self.st), "train": self.cfg.to_dict(), "model": self.model.config.to_dict(),
                    "fingerprint": self.loo.data.fingerprint()}
            save_checkpoint(self.ckpt, meta, self.model, self.opt, self.sched, self.scaler, self.best_state,
                            extra, self.device)

    def restore(self) -> None:
        """Continue from ``out_dir/checkpoint.safetensors``, or raise saying why not. A fresh start
        only when there is nothing to resume: a run was set up there but finished no epoch (said on stderr;
        a folder that never held a run is refused before it is made: ``_held_a_run``).
        A folder that holds a run's or a model's files but no checkpoint, an unreadable checkpoint or
        one from other data, model or options is a ``SeqrecError``: ``--resume`` never silently restarts.
        Rank 0 reads and checks the checkpoint; every rank loads what it read."""
        found = self.group.agree(self._read)
        if found is None:
            return
        meta, tensors = found
        try:
            self.best_state, extra = restore_checkpoint(meta, tensors, self.model, self.opt, self.sched, self.scaler,
                                                        self.device)
            self.loss_sum = extra["loss_sum"].reshape(()).to(self.device, torch.float64)
        except (KeyError, ValueError, RuntimeError, TypeError, AttributeError) as e:
            raise SeqrecError(f"{self.ckpt}: cannot resume: its saved state does not fit this run "
                              f"({type(e).__name__}: {e})") from e
        if not self.group.main:  # the loss so far is counted once, on rank 0; dropout continues per rank
            self.loss_sum.zero_()
            self.group.restore_rng(extra, self.device)
        self.st.restore(meta)

    def _read(self) -> tuple[dict[str, Any], dict[str, torch.Tensor]] | None:
        """(metadata, tensors) of a checkpoint that fits this run, None when there is nothing to resume."""
        if self.ckpt is None:
            raise SeqrecError("resume=True needs out_dir (where the checkpoint is)")
        if not self.ckpt.is_file():
            rows = self.out / METRICS
            present = [n for n in (CONFIG, WEIGHTS, SUMMARY, RESULT)
                       if (self.out / n).exists()]
            if rows.is_file() and rows.stat().st_size > 0:
                present.insert(0, METRICS)
            if present:
                raise SeqrecError(f"{self.out}: cannot resume: there is no {CHECKPOINT} (the folder holds "
                                  f"{', '.join(present)}); train without --resume to start over")
            if not self.cfg.quiet:  # a run was set up but finished no epoch: the same as a fresh start, said so
                print(f"{self.out}: no epoch finished yet: training from epoch 1", file=sys.stderr, flush=True)
            return None
        meta, tensors = load_checkpoint(self.ckpt)
        where = f"{self.ckpt}: cannot resume:"
        needed = ("fingerprint", "model", "train", "optim_groups", "optim_scalars", "scheduler", "scaler")
        lacking = [k for k in needed if k not in meta]
        if lacking or not isinstance(meta["train"], dict):
            raise SeqrecError(f"{where} the checkpoint lacks {lacking or ['train settings']}; it is damaged")
        if meta["fingerprint"] != self.loo.data.fingerprint():
            raise SeqrecError(f"{where} it was trained on other data (fingerprint {meta['fingerprint']})")
        if meta["model"] != self.model.config.to_dict():
            raise SeqrecError(f"{where} its model config {meta['model']} differs from {self.model.config.to_dict()}")
        ours = self.cfg.to_dict()
        diff = sorted(k for k, v in meta["train"].items() if k not in _RESUME_MAY_CHANGE and ours.get(k) != v)
        if diff:
            raise SeqrecError(f"{where} train options {diff} changed (only {sorted(_RESUME_MAY_CHANGE)} may)")
        return meta, tensors

    def diverged(self, where: str) -> TrainingDiverged:
        kept = f"the last good checkpoint {self.ckpt} is kept" if self.ckpt and self.ckpt.exists() else "no checkpoint"
        return TrainingDiverged(f"training diverged: the loss became {float(self.loss_sum)} in {where}; {kept}. "
                                f"Try a lower lr (now {self.cfg.lr}), warm-up, or grad_clip.")

    # ------------------------------------------------------------------ loop
    def epoch(self, epoch: int, tqdm: Callable) -> dict[str, Any]:
        """Train one epoch (from ``step_in_epoch`` on); returns its metrics row. Each micro-batch and its
        negatives are built just before its step (``_step``)."""
        cfg, st = self.cfg, self.st
        if st.step_in_epoch == 0:  # dropout, per rank; restored from the checkpoint mid-epoch
            torch.manual_seed(cfg.seed * 1_000_003 + epoch + (self.group.rank << 52))
        plan = self.data.plan(epoch)
        real = [int(self.data.n[rows].sum()) for rows, _ in plan]  # real positions per micro-batch
        self.model.train()
        bar = tqdm(total=len(plan), initial=st.step_in_epoch, desc=f"epoch {epoch}", unit="batch", leave=False,
                   disable=cfg.quiet)
        t0 = time.perf_counter() - st.epoch_seconds
        for bi in range(st.step_in_epoch, len(plan)):
            rows, last = plan[bi]
            self._step(epoch, bi, rows, last, t0)
            bar.update(1)
            out_of_time = last and cfg.time_limit is not None and self.clock >= cfg.time_limit
            if bi % 50 == 0 or bi + 1 == len(plan) or out_of_time:
                seen = float(self.group.sum(self.loss_sum))
                if not math.isfinite(seen):
                    bar.close()
                    raise self.diverged(f"epoch {epoch}, batch {bi + 1}")
                if not cfg.quiet:
                    rate = len(self.data.n) * (bi + 1) / len(plan) / max(1e-9, time.perf_counter() - t0)
                    bar.set_postfix(loss=f"{seen / max(1, sum(real[: bi + 1])):.4f}", seq_s=f"{rate:.0f}")
            if out_of_time:
                break
        bar.close()
        seconds = time.perf_counter() - t0
        steps = st.step_in_epoch
        sequences = len(self.data.n) * steps / len(plan)  # over all processes
        row = {"epoch": epoch, "loss": float(self.group.sum(self.loss_sum)) / max(1, sum(real[:steps])),
               "lr": self.opt.param_groups[0]["lr"], "seconds": round(seconds, 4),
               "seq_per_s": round(sequences / max(seconds, 1e-9), 1), "threads": torch.get_num_threads()}
        return row if self.group.size == 1 else {**row, "processes": self.group.size}

    def _step(self, epoch: int, index: int, rows: np.ndarray, last: bool, t0: float) -> None:
        """Micro-batch ``index`` of ``epoch`` (this process's share of it): build it and its negatives,
        forward, backward; on the last micro-batch of an optimizer step, clip, step, schedule, and
        checkpoint every few steps."""
        cfg, st, dev, group = self.cfg, self.st, self.device, self.group
        share = group.share(rows)
        x, flat, targets = self.data.build(share.rows)
        prepared = group.prepare(self.objective, self.data, share, targets, epoch, index)
        x, flat, *extra = (t.to(dev, non_blocking=True) for t in (x, flat, *prepared))
        with group.no_sync(self.fwd, last), self.autocast():
            h = self.fwd(x)
            loss = self.objective(h.reshape(-1, h.shape[-1]).index_select(0, flat), self.model.item_embeddings(), *extra)
            # summed over the share's positions and scaled by the processes: DDP's mean is then the whole batch's sum
            weight = len(flat) * share.weight * group.size
            self.scaler.scale(loss * (weight / self.data.positions_per_step)).backward()
        self.loss_sum += loss.detach().double() * (len(flat) * share.weight)
        st.step_in_epoch = index + 1
        if not last:
            return
        if cfg.grad_clip is not None:
            self.scaler.unscale_(self.opt)
            clip_grad_norm(self.params, cfg.grad_clip)  # sparse embedding gradients too
        self.scaler.step(self.opt)
        self.scaler.update()
        self.opt.zero_grad(set_to_none=True)
        self.clock = st.train_seconds + time.perf_counter() - t0
        if cfg.time_limit is not None:  # one clock for every rank: the same schedule and the same last step
            self.clock = group.max(self.clock)
        self.sched.step()
        st.global_step += 1
        if cfg.checkpoint_every_steps and st.global_step % cfg.checkpoint_every_steps == 0:
            if not math.isfinite(float(group.sum(self.loss_sum))):
                raise self.diverged(f"epoch {epoch}")
            st.epoch_seconds = time.perf_counter() - t0
            self.save()

    def validate(self, row: dict[str, Any]) -> None:
        """Validation NDCG@10, best weights and the early-stopping counter."""
        st, t = self.st, time.perf_counter()
        metrics = evaluate(self.scorer, self.loo, EvalConfig(split="valid", max_users=self.cfg.eval_max_users))
        row["valid"], row["eval_seconds"] = metrics, round(time.perf_counter() - t, 4)
        if st.best_metric is None or metrics["NDCG@10"] > st.best_metric:
            st.best_metric, st.best_epoch, st.best_valid, st.bad_evals = metrics["NDCG@10"], row["epoch"], metrics, 0
            self.best_state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        else:
            st.bad_evals += 1
            st.finished = self.cfg.patience is not None and st.bad_evals >= self.cfg.patience

    def fit(self, callback: Callable[[dict[str, Any]], Any] | None) -> TrainResult:
        from tqdm.auto import tqdm

        cfg, st, group = self.cfg, self.st, self.group
        if self.out is not None and group.main:
            self.out.mkdir(parents=True, exist_ok=True)
            atomic_write_text(self.out / METRICS, "".join(json.dumps(r) + "\n" for r in st.history))
        bar = tqdm(total=cfg.epochs, initial=st.epoch, desc="epochs", unit="epoch", disable=cfg.quiet)
        while not st.finished and st.epoch < cfg.epochs:
            row = self.epoch(st.epoch + 1, tqdm)
            st.train_seconds += row["seconds"]
            out_of_time = cfg.time_limit is not None and st.train_seconds >= cfg.time_limit
            if group.main and cfg.eval_every and (
                    row["epoch"] % cfg.eval_every == 0 or row["epoch"] == cfg.epochs or out_of_time):
                self.validate(row)
            st.finished = st.finished or out_of_time
            st.history.append(row)
            st.epoch, st.step_in_epoch, st.epoch_seconds = row["epoch"], 0, 0.0
            st.seconds += row["seconds"] + row.get("eval_seconds", 0.0)
            if group.size > 1:  # rank 0's validation and early-stopping decision for every rank
                row, state = group.broadcast((row, asdict(st)))
                st.restore(state)
            self.loss_sum = torch.zeros((), dtype=torch.float64, device=self.device)
            self.save()
            if self.out is not None and group.main:  # a log: appended, each row on disk before the next epoch starts
                with open(self.out / METRICS, "a") as f:
                    f.write(json.dumps(row) + "\n")
                    f.flush()
                    os.fsync(f.fileno())
            bar.update(1)
            bar.set_postfix(loss=f"{row['loss']:.4f}", best_ndcg10=f"{st.best_metric or 0:.4f}", seq_s=row["seq_per_s"])
            if group.broadcast(group.main and callback is not None and callback(row) is False):  # on rank 0
                break
        bar.close()
        if not group.main:  # rank 0's best weights and test metrics
            self.model.eval()
            result = group.broadcast(None)
            group.copy_from_main(self.model)
            return result
        if self.best_state is not None:
            self.model.load_state_dict(self.best_state)
        else:
            st.best_epoch = st.epoch
        self.model.eval()
        if self.cfg.fill_cold_items and hasattr(self.model, "fill_untrained_items"):  # feature neighbours
            with torch.no_grad():
                self.model.fill_untrained_items()
        test = evaluate(self.scorer, self.loo, EvalConfig(split="test"))
        result = TrainResult(st.best_epoch, st.best_valid, test, st.history, st.seconds)
        if self.out is not None:
            summary = {k: v for k, v in asdict(result).items() if k != "history"}
            atomic_write_text(self.out / RESULT, json.dumps(summary, indent=2) + "\n")
        if group.size > 1:
            group.broadcast(result)
            group.copy_from_main(self.model)
        return result


def _held_a_run(out: Path) -> None:
    """``--resume`` into ``out``: refused when no run was ever set up there (the folder is absent, or holds
    no seqrec marker), saying how to start a fresh run."""
    if not out.exists() or read_marker(out) is None:
        state = "does not exist" if not out.exists() else "never held a run"
        raise SeqrecError(f"{out}: cannot resume: the folder {state}, so there is nothing to continue; to start a "
                          f"fresh run there, train without --resume (resume=False)")


def train(model: torch.nn.Module, loo: LeaveOneOut, config: TrainConfig, out_dir: str | Path | None = None,
          resume: bool = False, callback: Callable[[dict[str, Any]], Any] | None = None) -> TrainResult:
    """Train ``model`` on ``loo.train()``; validate, stop early, reload the best weights, test once.

    ``callback(row)`` runs after each epoch (after its checkpoint); returning False stops training.
    With ``out_dir``: ``metrics.jsonl`` (one row per epoch), ``checkpoint.safetensors`` and
    ``result.json``. ``resume=True`` continues from the checkpoint there; a folder that never held a run
    (absent, or without seqrec's marker), a run's files without a checkpoint, or one that does not fit, are a
    ``SeqrecError`` (``Run.restore``): a resume never silently restarts. A run set up there that finished no
    epoch starts from epoch 1, saying so.
    Seeds torch's global generator (dropout) from ``config.seed``. In a worker of several processes
    (``seqrec.training.distributed``: started by ``SASRec(nproc=N).fit`` or torchrun) it trains that worker's
    share; rank 0 writes ``out_dir`` and runs ``callback``, every rank returns rank 0's result and weights.
    """
    group = join(config)
    if not group.main:
        config = replace(config, quiet=True)
    run = Run(model, loo, config, out_dir, group, resume=resume)
    before = torch.get_num_threads()
    if run.threads:
        torch.set_num_threads(run.threads)
    try:
        if resume:
            run.restore()
        result = run.fit(callback)
    finally:
        if run.threads:
            torch.set_num_threads(before)
    group.close()  # after a failure the process ends instead (a group torn down mid-collective can hang)
    return result

