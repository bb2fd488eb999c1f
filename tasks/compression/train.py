"""Training loop of the compression task (Section 2, eq. (1)/(4); authors' ``EntropyAutoencoder.py``, ``batching.py``).

Objective of the transform (and of delta, learned-step only), per mini-batch of luminance crops X in [0, 255]:

    L = mean_b ||X_b - X^_b||_F^2 + gamma * sum_i h~_i + 5e-4 * sum_W ||W||^2 / 2

with h~_i of eq. (4) (:meth:`PiecewiseLinearDensity.rate_bits`) and the l2 weight decay of the authors' code on
the six convolution kernels. Three groups of parameters, updated alternately on each mini-batch as in the authors'
``run_epoch_training``: first the density psi (plain gradient descent on its own loss, lr 0.2, after growing the
grid if needed, then projection onto psi >= 1e-6), then the transform (Adam, lr 1e-4, optionally decayed) and
the steps delta (plain gradient descent, lr 2e-8, then projection onto [0.8, 4]) on the same loss. Before that,
``density_warmup_epochs`` epochs over the crops (in order) fit only the density (authors' ``preliminary_fitting``).
Length: ``cfg.iterations`` mini-batches after the warm-up; by default the length of the authors' released model for
that gamma, with the learning-rate drops it got (:data:`~.config.AUTHORS_SCHEDULE`, one table for both).

Deviations: the authors run the graph twice per mini-batch (density, then transform); here one forward pass feeds
both (same parameters, an independent noise draw for the density fit), which saves one encoder pass. The density
is kept out of the data-parallel wrapper (its grid can grow); with ``world_size > 1`` its gradient and the grid
size are all-reduced so every rank holds the same psi. A resumed trial replays the same crop order but not the
same noise draws (the RNG state is not checkpointed).

Data parallelism (``resources.workers`` = W): every mini-batch of ``batch_size`` crops (the task's ``batch_field``,
which the core requires W to divide) is split into W equal shares, one per rank; the wrapper of
``ctx.prepare_model`` averages the transform's gradients, so a step trains on the same ``batch_size`` crops
whatever W. Precision: the forward passes run under ``ctx.autocast()``; the model returns float32 (``model.py``),
and the density, the rate and the objective are computed in float32 outside it.

Reported metrics: ``loss`` (L above), ``distortion`` (mean squared error per pixel, [0, 255] scale), ``rate``
(eq. (4) rate estimate in bits per pixel, sum_i h~_i / 256 since each map has H W / 256 coefficients),
``psnr_train`` (PSNR of X^ clipped to [0, 255]), all averaged over ranks.
"""
from __future__ import annotations

import math

import torch

from .config import authors_schedule
from .density import PiecewiseLinearDensity
from .model import STRIDE, Autoencoder, build_model

# What :func:`train` passes to ``ctx.report`` (the task's ``reports``).
REPORTS = ("iteration", "progress", "loss", "distortion", "rate", "psnr_train")


def lr_factor(cfg, iteration: int) -> float:
    """The authors' piecewise-constant decay of the transform's learning rate (x1, x0.1, x0.01) at the drop
    points of :data:`~.config.AUTHORS_SCHEDULE` for ``cfg.gamma``."""
    if cfg.lr_schedule == "constant":
        return 1.0
    first, second = authors_schedule(cfg.gamma).drops
    return 1.0 if iteration < first else 0.1 if iteration < second else 0.01


class _Batches:
    """Mini-batches of crops: global batch ``cfg.batch_size``, rank r taking its r-th share of
    ``batch_size / world_size`` crops; the order depends only on (seed, epoch), so a resumed trial sees the same
    sequence. The time spent building a batch counts as the trial's data wait."""

    def __init__(self, crops: torch.Tensor, cfg, ctx):
        if cfg.batch_size % ctx.world_size:  # refused at spec load; a config built by hand may still do it
            raise ValueError(f"batch_size {cfg.batch_size} does not split evenly over {ctx.world_size} workers")
        self.crops, self.ctx, self.seed = crops, ctx, ctx.seed
        self.size = cfg.batch_size
        self.per_rank = cfg.batch_size // ctx.world_size
        self.per_epoch = max(1, len(crops) // self.size)

    def get(self, step: int, shuffle: bool = True) -> torch.Tensor:
        with self.ctx.data_wait():
            epoch, i = divmod(step, self.per_epoch)
            n = len(self.crops)
            if shuffle:
                order = torch.randperm(n, generator=torch.Generator().manual_seed(self.seed * 100_003 + epoch))
            else:
                order = torch.arange(n)
            start = i * self.size + self.ctx.rank * self.per_rank
            idx = order[torch.arange(start, start + self.per_rank) % n]
            return self.crops[idx].to(self.ctx.device, torch.float32)


def _density_step(density, opt, y, steps, ctx) -> float:
    """Grow the grid if needed, then one gradient step of the density's own loss on y + delta tau."""
    max_abs = ctx.all_reduce((y.abs().max() + 0.5 * steps.max()).detach().clone(), "max")
    density.expand(float(max_abs))
    y_tilde = y + steps.view(1, -1, 1, 1) * (torch.rand_like(y) - 0.5)
    opt.zero_grad(set_to_none=True)
    loss = density.density_loss(y_tilde)
    loss.backward()
    ctx.all_reduce(density.psi.grad)
    opt.step()
    density.project()
    return float(loss.detach())


def _objective(cfg, net, x, out, rate) -> torch.Tensor:
    """L of the module docstring: per-image squared error (mean over the batch) + gamma sum_i h~_i + decay."""
    distortion = ((x - out["x_hat"]) ** 2).sum(dim=(1, 2, 3)).mean()
    decay = sum(w.pow(2).sum() for w in net.conv_weights()) / 2
    return distortion + cfg.gamma * rate.sum() + cfg.weight_decay * decay


def _metrics(x, out, rate_bits, loss, ctx) -> dict[str, float]:
    mse = ((x - out["x_hat"]) ** 2).mean()
    mse_clipped = ((x - out["x_hat"].clamp(0, 255)) ** 2).mean()
    vals = torch.stack([loss.detach(), mse.detach(), rate_bits.detach().sum() / STRIDE ** 2, mse_clipped.detach()])
    loss_v, mse_v, rate_v, mse_c = ctx.all_reduce(vals.float()).tolist()
    psnr = 10.0 * math.log10(255.0 ** 2 / max(mse_c, 1e-10))
    return {"loss": loss_v, "distortion": mse_v, "rate": rate_v, "psnr_train": psnr}


def train(cfg, data, ctx) -> Autoencoder | None:
    """Train the autoencoder of ``cfg`` on ``data.train_crops`` (uint8, (N, 1, c, c)); see the module docstring.

    Resumes from ``ctx.load_checkpoint()`` (the density warm-up is skipped then); reports every
    ``cfg.report_every`` iterations, and with a checkpoint every ``cfg.checkpoint_every`` and at the end (with
    ``iterations = 0``, once after the warm-up: the smoke path); then sets the
    latent means mu_i on ``data.extra_images``. Returns the trained (unwrapped) model, or None for the anchors.
    """
    if cfg.codec != "autoencoder":
        return None
    if (source := ctx.sources.get("model")) is not None:
        return load_trained(cfg, source, ctx)
    torch.manual_seed(ctx.seed * 1009 + ctx.rank)  # the training noise tau
    net = build_model(cfg)
    density = PiecewiseLinearDensity(cfg.m)
    ckpt = ctx.load_checkpoint()
    if ckpt is not None:
        net.load_state_dict(ckpt["model"])
        density.load_state_dict(ckpt["density"])
    model = ctx.prepare_model(net)
    net = ctx.unwrap(model)
    density.to(ctx.device)
    delta = [net.delta] if net.delta is not None else []
    opt_transform = torch.optim.Adam([p for p in net.parameters() if all(p is not d for d in delta)], lr=cfg.lr)
    opt_delta = torch.optim.SGD(delta, lr=cfg.lr_delta) if delta else None
    opt_density = torch.optim.SGD([density.psi], lr=cfg.lr_density)
    batches = _Batches(data.train_crops, cfg, ctx)

    def checkpoint(iteration: int) -> dict:
        return {"iteration": iteration, "model": net.state_dict(), "density": density.state_dict(),
                "opt_transform": opt_transform.state_dict(),
                "opt_delta": opt_delta.state_dict() if opt_delta else None}

    start = 0
    if ckpt is not None:
        start = int(ckpt["iteration"])
        opt_transform.load_state_dict(ckpt["opt_transform"])
        if opt_delta is not None and ckpt.get("opt_delta"):
            opt_delta.load_state_dict(ckpt["opt_delta"])
    else:
        n_warm = cfg.density_warmup_epochs * batches.per_epoch
        for step in range(n_warm):
            x = batches.get(step, shuffle=False)
            with torch.no_grad(), ctx.autocast():
                y = net.encode(x)
            loss = _density_step(density, opt_density, y, net.steps().detach(), ctx)
            if (step + 1) % max(1, n_warm // 10) == 0:
                ctx.log(f"density warm-up {step + 1}/{n_warm}: density loss {loss:.4g}")

    for it in range(start, cfg.iterations):
        x = batches.get(it)
        with ctx.autocast():
            out = model(x)
        _density_step(density, opt_density, out["y"].detach(), net.steps().detach(), ctx)
        rate = density.rate_bits(out["y_tilde"], net.steps())
        loss = _objective(cfg, net, x, out, rate)
        for group in opt_transform.param_groups:
            group["lr"] = cfg.lr * lr_factor(cfg, it)
        opt_transform.zero_grad(set_to_none=True)
        if opt_delta is not None:
            opt_delta.zero_grad(set_to_none=True)
        loss.backward()
        opt_transform.step()
        if opt_delta is not None:
            opt_delta.step()
            net.clip_steps()
        done = it + 1
        save = done % cfg.checkpoint_every == 0 or done == cfg.iterations
        if save or done % cfg.report_every == 0:
            ctx.report({"iteration": done, "progress": done / cfg.iterations, **_metrics(x, out, rate, loss, ctx)},
                       checkpoint=checkpoint(done) if save else None)

    if start >= cfg.iterations:  # no training step ran (iterations = 0, or resumed at the end): report once
        x = batches.get(start)
        with torch.no_grad():
            with ctx.autocast():
                out = net(x)
            rate = density.rate_bits(out["y_tilde"], net.steps())
            loss = _objective(cfg, net, x, out, rate)
        ctx.report({"iteration": start, "progress": 1.0, **_metrics(x, out, rate, loss, ctx)},
                   checkpoint=checkpoint(start))

    extra = getattr(data, "extra_images", None)
    if extra is not None:
        with ctx.autocast():  # as evaluation's encoder runs
            net.set_latent_means(extra)
    else:
        ctx.log("no data.extra_images: latent means mu_i left at 0")
    ctx.save_artifact(ARTIFACT, {"model": net.state_dict(), "density": density.state_dict(),
                                 "config": {"m": cfg.m, "quantization": cfg.quantization, "gamma": cfg.gamma}})
    return net


ARTIFACT = "model"  # what a trained autoencoder leaves for later sweeps (``from_trials: {model: ...}``)


def load_trained(cfg, source, ctx) -> Autoencoder:
    """The autoencoder a trial of an earlier sweep trained (its weights, steps delta_i and latent means mu_i, which
    were measured on that trial's extra images), for evaluation without training (``sweeps/compression-eval.yaml``).
    ``m`` and ``quantization`` were checked against the source's when the spec was loaded."""
    net = build_model(cfg)
    net.load_state_dict(source.load(ARTIFACT)["model"])
    ctx.log(f"evaluating the model trained by {source.uri} (no training)")
    ctx.report({"progress": 1.0})
    return net.to(ctx.device)
