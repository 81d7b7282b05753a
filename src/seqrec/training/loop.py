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
import time
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from seqrec.config import CHOICES, DEFAULT_NEGATIVES, LOSSES, TrainConfig, TrainResult  # noqa: F401  (re-exported)
from seqrec.data.split import Split
from seqrec.errors import SeqrecError
from seqrec.evaluation.evaluator import EvalConfig, evaluate
from seqrec.evaluation.report import METRICS
from seqrec.files import CHECKPOINT, RESULT, atomic_write_text
from seqrec.models.sasrec import SASRecModel
from seqrec.publish import check_output_folder
from seqrec.training.batches import Batches
from seqrec.training.distributed import Solo, join
from seqrec.training.objective import Objective
from seqrec.training.optim import _OnDevice, _optimizer, clip_grad_norm, lr_factor, resolve_device
from seqrec.training.resume import Resumable, RunState, held_a_run


class TrainingDiverged(SeqrecError):
    """The loss became NaN or infinite; the last good checkpoint is left as it was."""


# ----------------------------------------------------------------------------- training
class Run(Resumable):
    """One training run: its objects, its state (``RunState``) and its checkpoint."""

    def __init__(
        self,
        model: SASRecModel,
        loo: Split,
        cfg: TrainConfig,
        out_dir: str | Path | None,
        group: Any = None,
        resume: bool = False,
    ) -> None:
        if model.n_items != loo.data.n_items:
            raise SeqrecError(f"the model has {model.n_items} items but the data set has {loo.data.n_items}")
        self.group: Any = group or Solo(resolve_device(cfg.device))  # rank 0 alone writes
        group = self.group
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
                group.agree(lambda: held_a_run(out))
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
        self.clock = 0.0  # wall seconds of the run so far (training and validation), when there is a time limit
        self.reserve = 0.0  # wall seconds kept back at the end of a time limit: the last validation and the test
        self.started = time.perf_counter()  # the run's wall clock starts (a resumed run: minus its seconds so far)
        self.sched = torch.optim.lr_scheduler.LambdaLR(
            self.opt,
            lambda s: lr_factor(s, warmup, total, cfg.schedule, self.clock / self.budget() if cfg.time_limit else None),
        )
        self.scaler = torch.amp.GradScaler(device.type, enabled=cfg.precision == "fp16")
        amp = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(cfg.precision)
        self.autocast = (lambda: torch.autocast(device.type, dtype=amp)) if amp else contextlib.nullcontext
        self.scorer: Any = model if device.type == "cpu" else _OnDevice(model, device)
        self.st = RunState()
        self.loss_sum = torch.zeros((), dtype=torch.float64, device=device)
        self.best_state: dict[str, torch.Tensor] | None = None
        if self.out is not None:  # created (with seqrec's marker) only once the run is set up
            group.agree(self._make_folder)

    def budget(self) -> float:
        """Wall seconds the training steps may run to under ``time_limit``: the limit less what the last
        validation and the test evaluation are expected to cost (each about one measured validation)."""
        assert self.cfg.time_limit is not None, "a budget needs a time limit"
        return max(1e-9, self.cfg.time_limit - self.reserve)

    def elapsed(self) -> float:
        """Wall seconds of this run so far: training, validation and checkpoints (resumes included)."""
        return time.perf_counter() - self.started

    def diverged(self, where: str) -> TrainingDiverged:
        kept = f"the last good checkpoint {self.ckpt} is kept" if self.ckpt and self.ckpt.exists() else "no checkpoint"
        return TrainingDiverged(
            f"training diverged: the loss became {float(self.loss_sum)} in {where}; {kept}. "
            f"Try a lower lr (now {self.cfg.lr}), warm-up, or grad_clip."
        )

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
        bar = tqdm(
            total=len(plan),
            initial=st.step_in_epoch,
            desc=f"epoch {epoch}",
            unit="batch",
            leave=False,
            disable=cfg.quiet,
        )
        t0 = time.perf_counter() - st.epoch_seconds
        for bi in range(st.step_in_epoch, len(plan)):
            rows, last = plan[bi]
            self._step(epoch, bi, rows, last, t0)
            bar.update(1)
            out_of_time = last and cfg.time_limit is not None and self.clock >= self.budget()
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
        row = {
            "epoch": epoch,
            "loss": float(self.group.sum(self.loss_sum)) / max(1, sum(real[:steps])),
            "lr": self.opt.param_groups[0]["lr"],
            "seconds": round(seconds, 4),
            "seq_per_s": round(sequences / max(seconds, 1e-9), 1),
            "threads": torch.get_num_threads(),
        }
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
            loss = self.objective(
                h.reshape(-1, h.shape[-1]).index_select(0, flat), self.model.item_embeddings(), *extra
            )
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
        self.clock = self.elapsed()
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
        seconds = time.perf_counter() - t
        row["valid"], row["eval_seconds"] = metrics, round(seconds, 4)
        # the test ranks every evaluated user: scaled from a validation on a sample of them
        everyone = len(self.loo.eval_users)
        self.reserve = seconds * (1.0 + everyone / max(1, min(everyone, self.cfg.eval_max_users or everyone)))
        if st.best_metric is None or metrics["NDCG@10"] > st.best_metric:
            st.best_metric, st.best_epoch, st.best_valid, st.bad_evals = metrics["NDCG@10"], row["epoch"], metrics, 0
            self.best_state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        else:
            st.bad_evals += 1
            st.finished = self.cfg.patience is not None and st.bad_evals >= self.cfg.patience

    def _due(self, epoch: int) -> bool:
        """Whether ``epoch`` is validated: every ``eval_every`` epochs, or under ``eval_share`` every ``eval_gap``
        epochs after the last validation (the first epoch is always validated then, to measure its cost)."""
        if self.cfg.eval_share is None:
            return epoch % self.cfg.eval_every == 0
        return self.st.last_eval == 0 or epoch - self.st.last_eval >= max(1, self.st.eval_gap)

    def fit(self, callback: Callable[[dict[str, Any]], Any] | None) -> TrainResult:
        from tqdm.auto import tqdm

        cfg, st, group = self.cfg, self.st, self.group
        if self.out is not None and group.main:
            self.out.mkdir(parents=True, exist_ok=True)
            atomic_write_text(self.out / METRICS, "".join(json.dumps(r) + "\n" for r in st.history))
        bar = tqdm(total=cfg.epochs, initial=st.epoch, desc="epochs", unit="epoch", disable=cfg.quiet)
        self.started = time.perf_counter() - st.seconds  # the wall clock goes on from a resumed run's seconds
        while not st.finished and st.epoch < cfg.epochs:
            row = self.epoch(st.epoch + 1, tqdm)
            st.train_seconds += row["seconds"]
            # out of time when the steps reached the budget (the limit less the last validation and the test)
            out_of_time = cfg.time_limit is not None and group.max(self.elapsed()) >= self.budget()
            if group.main and cfg.eval_every and (self._due(row["epoch"]) or row["epoch"] == cfg.epochs or out_of_time):
                self.validate(row)
                st.last_eval = row["epoch"]
                if cfg.eval_share:  # validation's share of the wall time at most eval_share, from the mean seconds
                    done = st.history + [row]  # of every epoch and validation so far (one slow one moves it little)
                    per_epoch = max(sum(h["seconds"] for h in done) / len(done), 1e-9)
                    timed = [h["eval_seconds"] for h in done if "eval_seconds" in h]
                    per_eval = sum(timed) / len(timed)
                    gap = math.ceil(per_eval * (1 - cfg.eval_share) / (cfg.eval_share * per_epoch))
                    st.eval_gap = max(cfg.eval_every, gap)
            st.finished = st.finished or out_of_time
            st.history.append(row)
            st.epoch, st.step_in_epoch, st.epoch_seconds = row["epoch"], 0, 0.0
            st.seconds = row["wall_seconds"] = round(self.elapsed(), 4)  # wall: training, validation, checkpoints
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
        st.seconds = self.elapsed()  # the whole run's wall seconds, the test included
        result = TrainResult(st.best_epoch, st.best_valid, test, st.history, st.seconds)
        if self.out is not None:
            summary = {k: v for k, v in asdict(result).items() if k != "history"}
            atomic_write_text(self.out / RESULT, json.dumps(summary, indent=2) + "\n")
        if group.size > 1:
            group.broadcast(result)
            group.copy_from_main(self.model)
        return result


def train(
    model: SASRecModel,
    loo: Split,
    config: TrainConfig,
    out_dir: str | Path | None = None,
    resume: bool = False,
    callback: Callable[[dict[str, Any]], Any] | None = None,
) -> TrainResult:
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
