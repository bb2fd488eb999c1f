"""Training and evaluation of the `tagging` task (Ferraro et al., EUSIPCO 2020, Sections IV, VI and VII).

Features come from the shared :class:`.features.FeatureStore` (computed once per clip, sample rate and mel count,
whatever the hop and log type). Both models train with Adam (lr 1e-3) on binary cross-entropy (Section IV) for the
epochs, batch size and learning-rate decay of ``protocol`` (:meth:`.config.TaggingConfig.schedule`): by default
early stopping on the validation ROC-AUC (``patience`` epochs) keeping the best weights; ``authors``: the authors'
fixed epochs (MUSICNN: lr x 0.1 every 100 passes), the last weights. The learning rate of a pass is computed from
its index, so a trial resumed from its checkpoint continues the decay. VGG-CNN sees the whole 29.1 s clip; MUSICNN
trains on one random 3 s patch per clip each epoch (a pass) and scores a clip by averaging its tag scores over
consecutive 3 s patches (Section VI-B). Evaluation on the test split: ROC-AUC and PR-AUC per tag and
macro-averaged over the tags that have positive and negative test clips (Section VII).

Data parallelism (``resources.workers`` = W, :func:`epoch_batches`): a mini-batch of ``batch_size`` clips is split
into W equal contiguous shares, one per rank, and the wrapper of ``ctx.prepare_model`` averages the ranks'
gradients, so a step's gradient is that of the mean loss over the whole batch whatever W (MUSICNN's random patches
are drawn for the whole batch on every rank, so a clip gets the same patch whatever rank takes it). The core
refuses a ``batch_size`` that W does not divide; the epoch's last, partial batch is trimmed to a multiple of W
(dropping fewer than W clips, a different few each epoch as the order is reshuffled), and is dropped when it
would leave a rank fewer than :data:`MIN_SHARE` clips, since both models end in a BatchNorm over the batch (one
clip per rank cannot be normalised in training mode). Before each validation, the ranks' BatchNorm running
statistics are averaged, so every rank scores the same model and takes the same early-stopping decision. What is
left of the difference from one worker: each rank normalises its share with its own batch statistics (no
synchronised BatchNorm), as data-parallel training usually does.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from sweeplab.api import Evaluation

from .features import FeatureStore, FeatureView
from .models import build_model, input_frames

# The task's declarations: final metrics of :func:`evaluate`, its rows (one per tag; ``roc_auc``/``pr_auc`` null
# for a tag without both positive and negative test clips), and what :func:`train` reports each epoch.
METRIC_TYPES = {"roc_auc": float, "pr_auc": float, "tags_evaluated": int, "feature_frames": int,
                "feature_bytes_per_clip": int}
ROW_TYPES = {"tag": str, "roc_auc": float, "pr_auc": float, "n_positive": int, "n_test": int}
REPORTS = ("epoch", "progress", "loss", "val_roc_auc", "lr")
MIN_SHARE = 2  # clips a rank needs per batch: the models' last BatchNorm normalises over the batch alone


def trained_config(cfg, data):
    """The config of the model a trial trains: as many outputs as the data has tags (``data.tags``), which may be
    fewer than ``cfg.n_tags`` (the embedded set has 12)."""
    return dataclasses.replace(cfg, n_tags=len(data.tags))


def _features(cfg, data, ctx) -> dict[str, FeatureView]:
    """One lazy view per split: mini-batches read their clips from the store, nothing else is held in memory."""
    store = FeatureStore(Path(cfg.feature_dir).expanduser())
    out = {}
    for split, clips in data.splits.items():
        key = f"{data.key}-{split}-{len(clips)}"
        out[split] = store.get(key, clips, cfg.sample_rate, cfg.n_mels, cfg.hop_factor, cfg.log)
    return out


def _patches(x: torch.Tensor, frames: int) -> torch.Tensor:
    """Consecutive patches of ``frames`` frames of clips (B, n_mels, T) -> (B, P, n_mels, frames) (the last,
    partial patch is dropped unless it is the only one, which is zero-padded)."""
    t = x.shape[-1]
    if t < frames:
        x = F.pad(x, (0, frames - t))
        t = frames
    n = t // frames
    return x[..., :n * frames].reshape(*x.shape[:-1], n, frames).movedim(-2, 1)


def _patch_starts(n: int, t: int, frames: int, gen: torch.Generator) -> torch.Tensor:
    """The first frame of a random ``frames``-frame patch of each of ``n`` clips of ``t`` frames."""
    return torch.randint(0, max(1, t - frames + 1), (n,), generator=gen)


def _random_patches(x: torch.Tensor, frames: int, starts: torch.Tensor) -> torch.Tensor:
    """Clips (B, n_mels, T) -> the patches (B, n_mels, frames) starting at ``starts`` (clips shorter than a patch
    are zero-padded)."""
    t = x.shape[-1]
    if t <= frames:
        return F.pad(x, (0, frames - t))
    return torch.stack([c[..., s:s + frames] for c, s in zip(x, starts.tolist())])


def epoch_batches(n: int, batch: int, world_size: int) -> list[tuple[int, int]]:
    """``(start, stop)`` in an epoch's order of each global mini-batch: full batches of ``batch`` clips, then the
    remainder trimmed to a multiple of ``world_size``, kept if it gives every rank :data:`MIN_SHARE` clips (see the
    module docstring). Rank r of a batch takes its r-th share of ``(stop - start) // world_size`` clips."""
    out = [(b, b + batch) for b in range(0, n - batch + 1, batch)]
    rest = (n % batch) // world_size * world_size
    if rest >= MIN_SHARE * world_size:
        out.append((n - n % batch, n - n % batch + rest))
    return out


@torch.no_grad()
def predict(cfg, model, feats: FeatureView | np.ndarray, ctx, batch: int = 16) -> np.ndarray:
    """Tag probabilities (n_clips, n_tags), read (``ctx.data_wait``) and scored (``ctx.autocast``) ``batch`` clips
    at a time; MUSICNN averages them over each clip's 3 s patches."""
    model.eval()
    frames = input_frames(cfg)
    out = []
    for i in range(0, len(feats), batch):
        with ctx.data_wait():
            x = torch.as_tensor(np.asarray(feats[i:i + batch]), dtype=torch.float32, device=ctx.device)
        with ctx.autocast():
            if cfg.model == "musicnn":
                p = _patches(x, frames)  # (B, P, n_mels, frames)
                logits = model(p.reshape(-1, 1, *p.shape[2:])).float().reshape(p.shape[0], p.shape[1], -1)
                out.append(torch.sigmoid(logits).mean(1).cpu())
            else:
                out.append(torch.sigmoid(model(x.unsqueeze(1)).float()).cpu())
    model.train()
    return torch.cat(out).numpy()


def auc_scores(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-tag ROC-AUC and PR-AUC (average precision); NaN for a tag without both classes."""
    from sklearn.metrics import average_precision_score, roc_auc_score
    roc, pr = np.full(labels.shape[1], np.nan), np.full(labels.shape[1], np.nan)
    for j in range(labels.shape[1]):
        if 0 < labels[:, j].sum() < len(labels):
            roc[j] = roc_auc_score(labels[:, j], scores[:, j])
            pr[j] = average_precision_score(labels[:, j], scores[:, j])
    return roc, pr


def train(cfg, data, ctx):
    """Train the model of ``cfg``; returns ``(model, features)`` with the best validation weights loaded."""
    feats = _features(cfg, data, ctx)
    net = build_model(trained_config(cfg, data))  # fewer tags than n_tags may exist
    model = ctx.prepare_model(net)
    net = ctx.unwrap(model)
    sched = cfg.schedule()  # epochs, batch size, patience and learning rate of the protocol
    opt = torch.optim.Adam(model.parameters(), lr=sched.lr)
    state = {"epoch": 0, "best_auc": -1.0, "best": None, "bad_epochs": 0}
    if (ckpt := ctx.load_checkpoint()) is not None:
        net.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["opt"])
        state = ckpt["state"]
    x_train, y_train = feats["train"], torch.as_tensor(data.labels["train"])
    gen = torch.Generator().manual_seed(ctx.seed)
    frames = input_frames(cfg)
    batches = epoch_batches(len(x_train), sched.batch_size, ctx.world_size)
    if sched.batch_size % ctx.world_size or sched.batch_size // ctx.world_size < MIN_SHARE or not batches:
        raise ValueError(f"a batch of {sched.batch_size} clips ({len(x_train)} training clips) cannot give each of "
                         f"{ctx.world_size} workers an equal share of at least {MIN_SHARE} clips")
    for epoch in range(state["epoch"], sched.epochs):
        for group in opt.param_groups:  # from the pass index: a resumed trial continues the decay
            group["lr"] = sched.lr_at(epoch)
        gen.manual_seed(ctx.seed * 10_007 + epoch)
        order = torch.randperm(len(x_train), generator=gen)
        total = torch.zeros((), device=ctx.device)
        for start, stop in batches:
            share = (stop - start) // ctx.world_size
            first = start + ctx.rank * share
            idx = order[first:first + share]
            with ctx.data_wait():  # this share's clips only, read from the store
                x = torch.from_numpy(np.asarray(x_train[idx.numpy()], dtype=np.float32))
            if cfg.model == "musicnn":  # drawn for the whole batch on every rank: a clip's patch whatever W
                starts = _patch_starts(stop - start, x_train.shape[-1], frames, gen)
                x = _random_patches(x, frames, starts[first - start:first - start + share])
            with ctx.autocast():
                logits = model(x.unsqueeze(1).to(ctx.device))
            loss = F.binary_cross_entropy_with_logits(logits.float(), y_train[idx].to(ctx.device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.detach()
        epoch_loss = float(ctx.all_reduce(total / len(batches)))
        for buffer in net.buffers():  # BatchNorm running statistics: the same on every rank (module docstring)
            if buffer.is_floating_point():
                ctx.all_reduce(buffer)
        roc, _ = auc_scores(data.labels["valid"], predict(cfg, net, feats["valid"], ctx))
        val_auc = float(np.nanmean(roc)) if np.isfinite(roc).any() else 0.0
        improved = val_auc > state["best_auc"]
        state.update(epoch=epoch + 1, bad_epochs=0 if improved else state["bad_epochs"] + 1)
        if improved:
            state.update(best_auc=val_auc, best={k: v.detach().cpu().clone() for k, v in net.state_dict().items()}
                         if sched.keep_best else None)
        ctx.report({"epoch": epoch + 1, "progress": (epoch + 1) / sched.epochs, "loss": epoch_loss,
                    "val_roc_auc": val_auc, "lr": opt.param_groups[0]["lr"]},
                   checkpoint={"model": net.state_dict(), "opt": opt.state_dict(), "state": state})
        if sched.patience and state["bad_epochs"] >= sched.patience:
            ctx.log(f"early stop at epoch {epoch + 1}: best validation ROC-AUC {state['best_auc']:.4f}")
            break
    if state["best"] is not None:
        net.load_state_dict(state["best"])
    return net, feats


def evaluate(cfg, trained, data, ctx):
    """ROC-AUC and PR-AUC on the test split, macro over tags; one ``evaluations`` row per tag."""
    net, feats = trained
    labels = data.labels["test"]
    roc, pr = auc_scores(labels, predict(cfg, net, feats["test"], ctx))
    rows = [{"tag": tag, "roc_auc": None if np.isnan(r) else float(r), "pr_auc": None if np.isnan(p) else float(p),
             "n_positive": int(labels[:, j].sum()), "n_test": len(labels)}
            for j, (tag, r, p) in enumerate(zip(data.tags, roc, pr))]
    shape = feats["test"].shape
    metrics = {"roc_auc": float(np.nanmean(roc)), "pr_auc": float(np.nanmean(pr)),
               "tags_evaluated": int(np.isfinite(roc).sum()), "feature_frames": int(shape[-1]),
               "feature_bytes_per_clip": int(4 * shape[1] * shape[2])}
    return Evaluation(metrics, rows)
