"""A run's resumable side: ``RunState`` (where it is, saved in every checkpoint's metadata) and ``Resumable``,
the part of ``Run`` that creates its folder and writes, checks and restores its checkpoint."""

from __future__ import annotations

import sys
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch

from seqrec.config import TrainConfig
from seqrec.data.split import Split
from seqrec.errors import SeqrecError
from seqrec.evaluation.report import METRICS
from seqrec.files import CHECKPOINT, CONFIG, RESULT, SUMMARY, WEIGHTS, read_marker, write_marker
from seqrec.models.sasrec import SASRecModel
from seqrec.training.checkpoint import load_checkpoint, restore_checkpoint, save_checkpoint

_RESUME_MAY_CHANGE = {
    "epochs",
    "patience",
    "quiet",
    "device",
    "threads",
    "compile",
    "eval_max_users",
    "checkpoint_every_steps",
    "eval_every",
    "eval_share",
    "nproc",
}


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
    eval_gap: int = 0  # epochs between validations under eval_share (0: eval_every's)
    last_eval: int = 0  # the epoch last validated
    history: list[dict[str, Any]] = field(default_factory=list)  # one row per epoch
    finished: bool = False
    seconds: float = 0.0  # wall seconds: training, validation and checkpoints
    train_seconds: float = 0.0

    def restore(self, meta: dict[str, Any]) -> None:
        for f in fields(self):
            if f.name in meta:
                setattr(self, f.name, meta[f.name])


class Resumable:
    """What ``Run`` sets up and this part reads: the run's folder, checkpoint path, objects and state."""

    out: Path | None
    ckpt: Path | None
    group: Any
    device: torch.device
    model: SASRecModel
    loo: Split
    cfg: TrainConfig
    opt: torch.optim.Optimizer
    sched: Any
    scaler: Any
    st: RunState
    loss_sum: torch.Tensor
    best_state: dict[str, torch.Tensor] | None

    def _make_folder(self) -> None:
        assert self.out is not None
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
            meta = {
                **asdict(self.st),
                "train": self.cfg.to_dict(),
                "model": self.model.config.to_dict(),
                "fingerprint": self.loo.data.fingerprint(),
            }
            save_checkpoint(
                self.ckpt, meta, self.model, self.opt, self.sched, self.scaler, self.best_state, extra, self.device
            )

    def restore(self) -> None:
        """Continue from ``out_dir/checkpoint.safetensors``, or raise saying why not. A fresh start
        only when there is nothing to resume: a run was set up there but finished no epoch (said on stderr;
        a folder that never held a run is refused before it is made: ``held_a_run``).
        A folder that holds a run's or a model's files but no checkpoint, an unreadable checkpoint or
        one from other data, model or options is a ``SeqrecError``: ``--resume`` never silently restarts.
        Rank 0 reads and checks the checkpoint; every rank loads what it read."""
        found = self.group.agree(self._read)
        if found is None:
            return
        meta, tensors = found
        try:
            self.best_state, extra = restore_checkpoint(
                meta, tensors, self.model, self.opt, self.sched, self.scaler, self.device
            )
            self.loss_sum = extra["loss_sum"].reshape(()).to(self.device, torch.float64)
        except (KeyError, ValueError, RuntimeError, TypeError, AttributeError) as e:
            raise SeqrecError(
                f"{self.ckpt}: cannot resume: its saved state does not fit this run ({type(e).__name__}: {e})"
            ) from e
        if not self.group.main:  # the loss so far is counted once, on rank 0; dropout continues per rank
            self.loss_sum.zero_()
            self.group.restore_rng(extra, self.device)
        self.st.restore(meta)

    def _read(self) -> tuple[dict[str, Any], dict[str, torch.Tensor]] | None:
        """(metadata, tensors) of a checkpoint that fits this run, None when there is nothing to resume."""
        if self.ckpt is None:
            raise SeqrecError("resume=True needs out_dir (where the checkpoint is)")
        if not self.ckpt.is_file():
            assert self.out is not None  # the checkpoint lives in it
            rows = self.out / METRICS
            present = [n for n in (CONFIG, WEIGHTS, SUMMARY, RESULT) if (self.out / n).exists()]
            if rows.is_file() and rows.stat().st_size > 0:
                present.insert(0, METRICS)
            if present:
                raise SeqrecError(
                    f"{self.out}: cannot resume: there is no {CHECKPOINT} (the folder holds "
                    f"{', '.join(present)}); train without --resume to start over"
                )
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


def held_a_run(out: Path) -> None:
    """``--resume`` into ``out``: refused when no run was ever set up there (the folder is absent, or holds
    no seqrec marker), saying how to start a fresh run."""
    if not out.exists() or read_marker(out) is None:
        state = "does not exist" if not out.exists() else "never held a run"
        raise SeqrecError(
            f"{out}: cannot resume: the folder {state}, so there is nothing to continue; to start a "
            f"fresh run there, train without --resume (resume=False)"
        )
