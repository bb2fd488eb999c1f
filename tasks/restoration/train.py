"""The three training stages of Wan et al. (CVPR 2020, Section 3; schedules and batches from the authors' code).

Every network is trained with its own Adam optimiser (lr 2e-4, betas (0.5, 0.999); ``optimizer=ttur`` gives the
authors' quality mapping model T 1e-4 / D 4e-4, betas (0, 0.9), and ``optimizer=authors`` ttur for the quality model,
the paper's rates for the scratch model), at the full rate for ``epochs`` and then
linearly decayed to zero over ``decay_epochs`` (the decay is applied per step). One epoch is ``epoch_images``
images (0: the training set) at the network's global batch size. Each GAN step updates the generator side first,
then its discriminators on the detached outputs (the pix2pixHD order the authors' code follows).

* stage ``vaes``: VAE1, then VAE2, one after the other in the same trial (the authors train them separately, with
  batches 100 and 120). VAE1's batch is half real old photos R and half synthetic X (``data.is_old``; the authors
  truncate each batch to min(#R, #X)); its epoch is the clean set's size (the authors' epoch: their loader walks
  the clean photos, old photos drawn beside them), not min(#R, #Y); it minimises eq. 1 for r and x and fools the
  latent discriminator D_R,X of eq. 2-3, which is trained to output 1 on Z_R and 0 on Z_X (``latent_fool``: eq. 3's
  two-sided term, or the code's one-sided one). VAE2 minimises eq. 1 on Y.
* stage ``mapping``: the VAEs of the stage-1 trial named by ``from_trials.vaes`` are loaded and frozen (never
  trained again, so a sweep over the mapping's weights reuses them); T maps E_R,X(x) towards E_Y(y) (both latent
  means), the restored image G_Y(T(z_x)) is judged by a discriminator conditioned on x (6 input channels).
* stage ``detector``: the U-Net on scratched, degraded greyscale crops with the class-balanced cross-entropy.

Batches: ``batch_vae1``, ``batch_vae2`` and ``batch_size`` are global batches. Step s's batch depends only on the
seed, the network and s (``data.StepBatches``), so a resumed run sees the batches the first one would have seen,
and a trial with several workers trains on the same batches as one with one: each rank takes its batch / workers
samples of every step, built ahead by ``loader_workers`` spawned processes. Every trained module is called through
the data-parallel wrapper of ``ctx.prepare_model`` (the VAEs through ``networks.SampledReconstruction``), so its
gradients are averaged over the ranks and the ranks' parameters stay equal. The averaged gradient is that of the
global batch's mean loss: every loss is a mean over equal shares of the batch, except the latent adversarial
terms, means over the R or the X samples, which a rank's share may hold unequally; each rank weighs its mean of a
kind by workers x (its samples of the kind) / (the batch's), so their average over the ranks is the batch's mean.
The detector's BatchNorm statistics are each rank's share's (per-device, as the authors' DataParallel).

Forward passes and losses run under ``ctx.autocast()`` (``dtype: bfloat16``); parameters, optimisers and
checkpoints stay float32. A trial checkpoints every network it trains and their optimisers every
``checkpoint_every`` steps and when each network finishes; a retried trial resumes from the last checkpoint.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Callable

import torch
import torch.nn.functional as F

from . import losses, networks
from .data import StepBatches, is_old, step_loader

# what the stages report as they go (each reports the terms of its own loss)
REPORTS = ("step", "progress", "loss", "loss_d", "kl", "l1", "gan", "feat_match", "vgg", "latent_fool",
           "loss_latent_d", "latent_l1")
VAES, MAPPING, DETECTOR = "vaes", "mapping", "detector"  # artifact names (also the sources' names)
STREAMS = {"vae1": 1, "vae2": 2, "mapping": 3, "detector": 4}  # each network's stream of batches


def adam(params, cfg, lr: float | None = None, betas: tuple[float, float] | None = None) -> torch.optim.Adam:
    return torch.optim.Adam(params, lr=cfg.lr if lr is None else lr, betas=betas or (cfg.beta1, cfg.beta2))


def lr_factor(cfg, step: int, steps_per_epoch: int) -> float:
    """1 for ``epochs``, then linear to 0 over ``decay_epochs`` (as a fraction of an epoch per step)."""
    epoch = step / steps_per_epoch
    if epoch < cfg.epochs or cfg.decay_epochs == 0:
        return 1.0
    return max(0.0, 1.0 - (epoch - cfg.epochs) / cfg.decay_epochs)


def steps_per_epoch(cfg, n_images: int, batch: int) -> int:
    """Steps of one epoch at the global ``batch``: the same whatever the number of workers."""
    return max(1, math.ceil((cfg.epoch_images or n_images) / batch))


@dataclasses.dataclass
class Phase:
    """One network's training: its modules (trained ones in ``nets``), optimisers, batches by step, step function
    ``step(step, batch)`` and length."""
    name: str
    nets: dict[str, torch.nn.Module]
    opts: dict[str, torch.optim.Optimizer]
    batches: StepBatches
    step: Callable[[int, tuple], dict[str, float]]
    per_epoch: int
    base_lr: dict[str, float] = dataclasses.field(default_factory=dict)

    def steps(self, cfg) -> int:
        return self.per_epoch * (cfg.epochs + cfg.decay_epochs)


def _state(phases: list[Phase], ctx) -> dict:
    return {p.name: {"nets": {k: ctx.unwrap(n).state_dict() for k, n in p.nets.items()},
                     "opts": {k: o.state_dict() for k, o in p.opts.items()}} for p in phases}


def loader_workers(cfg, ctx) -> int:
    """``loader_workers``, at most the rank's CPUs but one (the one that trains)."""
    return max(0, min(cfg.loader_workers, ctx.cpus - 1))


def run_phases(cfg, phases: list[Phase], ctx) -> None:
    """Train the phases in order with reports, checkpoints and resumption (module docstring)."""
    ckpt = ctx.load_checkpoint()
    done = {}
    if ckpt is not None:
        for p in phases:
            saved = ckpt["state"][p.name]
            for k, net in p.nets.items():
                ctx.unwrap(net).load_state_dict(saved["nets"][k])
            for k, opt in p.opts.items():
                opt.load_state_dict(saved["opts"][k])
        done = ckpt["done"]
    total = sum(p.steps(cfg) for p in phases)
    before, workers = 0, loader_workers(cfg, ctx)
    for p in phases:
        n = p.steps(cfg)
        for net in p.nets.values():
            net.train()
        start = done.get(p.name, 0)
        if start < n:
            ctx.log(f"training {p.name}: steps {start}..{n} ({p.per_epoch} per epoch)")
            for k, batch in enumerate(ctx.timed(step_loader(p.batches, range(start, n), workers))):
                step = start + k
                factor = lr_factor(cfg, step, p.per_epoch)
                for name, opt in p.opts.items():
                    for group in opt.param_groups:
                        group["lr"] = p.base_lr[name] * factor
                values = p.step(step, batch)
                last = step + 1 == n
                if (step + 1) % cfg.report_every == 0 or last:
                    checkpoint = None
                    if (step + 1) % cfg.checkpoint_every == 0 or last:
                        checkpoint = {"state": _state(phases, ctx), "done": {**done, p.name: step + 1}}
                    ctx.report({"step": step + 1, "progress": (before + step + 1) / total, **values}, checkpoint)
        done[p.name] = n
        before += n


def _phase(name, nets, opts, batches, step, per_epoch) -> Phase:
    return Phase(name, nets, opts, batches, step, per_epoch, {k: o.param_groups[0]["lr"] for k, o in opts.items()})


def _batches(cfg, data, ctx, network: str, kind: str, field: str, scratch_p: float = 0.0) -> StepBatches:
    """The batches of ``network`` at the global batch ``cfg.<field>``, this rank's share of each."""
    batch = getattr(cfg, field)
    if batch % ctx.world_size:  # checked at spec load when the core knows the field (Task.batch_field)
        raise ValueError(f"{field} {batch} does not split evenly over {ctx.world_size} workers (each rank trains "
                         f"on {field} / workers samples of every batch): use a multiple of {ctx.world_size}")
    return StepBatches(data, cfg.crop, kind, batch, ctx.seed, STREAMS[network], ctx.rank, ctx.world_size,
                       scratch_p)


def _to(batch: tuple, device) -> tuple:
    return tuple(t.to(device) for t in batch)


def _vgg(cfg, device):
    if cfg.vgg <= 0:
        return None
    return losses.VGGLoss(networks.load_vgg19(cfg.vgg_weights, cfg.vgg_input == "imagenet").to(device).eval())


def _generator_terms(cfg, disc, fake, real, vgg) -> tuple[torch.Tensor, dict[str, float], list]:
    """LSGAN + feature matching (+ VGG) of a generator's output ``fake`` against its target ``real``; ``disc`` takes
    the image (or the conditioned pair); the VGG term compares the last three channels (the image). Also returns
    D's predictions on ``real`` (their graph kept), which the discriminator's step then reuses: D's weights do not
    change between the two steps, so the real images go through D once."""
    pred_fake = disc(fake)
    pred_real = disc(real)  # feature matching detaches these; the discriminator step backpropagates through them
    gan = losses.lsgan(pred_fake, True)
    fm = losses.feature_matching(pred_fake, pred_real)
    total = cfg.gan * gan + cfg.feat_match * fm
    parts = {"gan": gan.item(), "feat_match": fm.item()}
    if vgg is not None:
        v = vgg(fake[:, -3:], real[:, -3:])
        total = total + cfg.vgg * v
        parts["vgg"] = v.item()
    return total, parts, pred_real


def _update(opt: torch.optim.Optimizer, loss: torch.Tensor) -> float:
    """One optimiser step on ``loss`` (its module's gradients zeroed first); the loss's value."""
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return loss.item()


def _discriminator_step(ctx, disc, opt, pred_real, fake) -> float:
    """LSGAN step of ``disc`` on its predictions ``pred_real`` of the real inputs and on the detached ``fake``."""
    with ctx.autocast():
        loss = 0.5 * (losses.lsgan(pred_real, True) + losses.lsgan(disc(fake.detach()), False))
    return _update(opt, loss)


def latent_shares(indices: range, batch: int, world_size: int) -> list[tuple[list[bool], float, bool]]:
    """(rows, weight, whether they are R) for each kind, R or X, that a rank's share ``indices`` of a VAE1 batch of
    ``batch`` samples holds: ``rows`` marks the kind's samples in the share, and the weight is world_size x (the
    share's samples of the kind) / (the batch's), so that the ranks' average of weight x (their mean over the kind)
    is the batch's mean over the kind (module docstring)."""
    shares = []
    for old in (True, False):
        rows = [is_old(g) == old for g in indices]
        if here := sum(rows):
            shares.append((rows, world_size * here / sum(is_old(g) == old for g in range(batch)), old))
    return shares


def latent_gan(preds, kinds, old_is_real: bool) -> torch.Tensor:
    """0.5 (LSGAN of D_R,X's predictions on Z_R with target ``old_is_real`` + on Z_X with the other target), each
    term this rank's weighted share of its kind's mean over the global batch (``kinds``: (rows, weight, old) as
    :func:`latent_shares`, rows a bool tensor; module docstring)."""
    return 0.5 * sum(weight * losses.lsgan([[scale[-1][rows]] for scale in preds], old == old_is_real)
                     for rows, weight, old in kinds)


def latent_fool(preds, kinds, mode: str = "both") -> torch.Tensor:
    """E_R,X's latent term (``latent_fool``): ``both``, Z_X judged as Z_R and Z_R as Z_X (eq. 3's labels swapped,
    0.5 x the sum); ``r_to_x``, only Z_R judged as Z_X, weight 1 (the authors' code)."""
    if mode == "both":
        return latent_gan(preds, kinds, old_is_real=False)
    return sum(weight * losses.lsgan([[scale[-1][rows]] for scale in preds], False) for rows, weight, old in kinds
               if old)


def vae_phases(cfg, data, ctx) -> tuple[list[Phase], dict[str, torch.nn.Module]]:
    """Stage 1: VAE1 with D_R,X and an image D, then VAE2 with its image D (module docstring)."""
    vgg = _vgg(cfg, ctx.device)
    vae1, vae2 = networks.VAE(cfg.ngf), networks.VAE(cfg.ngf)
    g1 = ctx.prepare_model(networks.SampledReconstruction(vae1))
    d1 = ctx.prepare_model(networks.MultiscaleDiscriminator(3))
    dl = ctx.prepare_model(networks.latent_discriminator(cfg.ngf))
    g2 = ctx.prepare_model(networks.SampledReconstruction(vae2))
    d2 = ctx.prepare_model(networks.MultiscaleDiscriminator(3))
    opt = {"g1": adam(g1.parameters(), cfg), "d1": adam(d1.parameters(), cfg), "dl": adam(dl.parameters(), cfg),
           "g2": adam(g2.parameters(), cfg), "d2": adam(d2.parameters(), cfg)}
    b1 = _batches(cfg, data, ctx, "vae1", "vae1", "batch_vae1")
    b2 = _batches(cfg, data, ctx, "vae2", "clean", "batch_vae2")
    kinds = [(torch.tensor(rows, device=ctx.device), weight, old)
             for rows, weight, old in latent_shares(b1.indices, b1.batch, ctx.world_size)]

    def vae_loss(vae, disc, images):
        out = vae(images)  # through the data-parallel wrapper, so that the ranks average the VAE's gradients
        mean, rec = out["mean"], out["x_hat"]
        adv, parts, pred_real = _generator_terms(cfg, disc, rec, images, vgg)
        kl, l1 = losses.kl_reduced(mean), F.l1_loss(rec, images)
        loss = cfg.kl * kl + cfg.pixel_l1 * l1 + adv
        return mean, rec, loss, pred_real, {"kl": kl.item(), "l1": l1.item(), **parts}

    def step_vae1(step: int, batch: tuple) -> dict[str, float]:
        (images,) = _to(batch, ctx.device)
        with ctx.autocast():
            mean, rec, loss, pred_real, parts = vae_loss(g1, d1, images)
            fool = latent_fool(dl(mean), kinds, cfg.latent_fool)
            loss = loss + cfg.latent_gan * fool
        loss_g = _update(opt["g1"], loss)
        d = _discriminator_step(ctx, d1, opt["d1"], pred_real, rec)
        with ctx.autocast():
            loss_dl = latent_gan(dl(mean.detach()), kinds, old_is_real=True)  # D_R,X: 1 on Z_R, 0 on Z_X (eq. 2)
        d_lat = _update(opt["dl"], loss_dl)
        return {"loss": loss_g, "loss_d": d, "loss_latent_d": d_lat, "latent_fool": fool.item(), **parts}

    def step_vae2(step: int, batch: tuple) -> dict[str, float]:
        (y,) = _to(batch, ctx.device)
        with ctx.autocast():
            _, rec, loss, pred_real, parts = vae_loss(g2, d2, y)
        loss_g = _update(opt["g2"], loss)
        return {"loss": loss_g, "loss_d": _discriminator_step(ctx, d2, opt["d2"], pred_real, rec), **parts}

    phases = [_phase("vae1", {"vae1": g1, "d1": d1, "dl": dl}, {k: opt[k] for k in ("g1", "d1", "dl")}, b1,
                     step_vae1, steps_per_epoch(cfg, len(data.clean), cfg.batch_vae1)),
              _phase("vae2", {"vae2": g2, "d2": d2}, {k: opt[k] for k in ("g2", "d2")}, b2, step_vae2,
                     steps_per_epoch(cfg, len(data.clean), cfg.batch_vae2))]
    return phases, {"vae1": vae1, "vae2": vae2}
def load_vaes(cfg, source, device) -> tuple[networks.VAE, networks.VAE]:
    """The frozen VAE1 and VAE2 of a stage-1 trial's ``vaes`` artifact."""
    saved = source.load(VAES)
    vaes = []
    for key in ("vae1", "vae2"):
        vae = networks.VAE(saved["ngf"])
        vae.load_state_dict(saved[key])
        vae.to(device).eval().requires_grad_(False)
        vaes.append(vae)
    return vaes[0], vaes[1]


def load_detector(source, device) -> networks.ScratchUNet:
    saved = source.load(DETECTOR)
    net = networks.ScratchUNet(base=saved["width"])
    net.load_state_dict(saved["detector"])
    return net.to(device).eval().requires_grad_(False)


def build_mapping(cfg) -> networks.Mapping:
    return networks.Mapping(cfg.ngf, width=cfg.mapping_width, nonlocal_block=cfg.nonlocal_block,
                            plain=cfg.nonlocal_kind == "plain")


def mapping_optimizer(cfg) -> str:
    """``paper`` or ``ttur`` for this mapping: ``authors`` is ttur for the quality model, paper for the scratch one."""
    if cfg.optimizer == "authors":
        return "paper" if cfg.nonlocal_block else "ttur"
    return cfg.optimizer


def mapping_phases(cfg, data, ctx) -> tuple[list[Phase], dict[str, torch.nn.Module]]:
    """Stage 2: T with both VAEs frozen, against a discriminator conditioned on the degraded input."""
    vae1, vae2 = load_vaes(cfg, ctx.sources[VAES], ctx.device)
    vgg = _vgg(cfg, ctx.device)
    mapping = build_mapping(cfg)
    t = ctx.prepare_model(mapping)
    d = ctx.prepare_model(networks.MultiscaleDiscriminator(6, spectral_norm=cfg.spectral_norm))
    if mapping_optimizer(cfg) == "ttur":
        opt = {"t": adam(t.parameters(), cfg, 1e-4, (0.0, 0.9)), "d": adam(d.parameters(), cfg, 4e-4, (0.0, 0.9))}
    else:
        opt = {"t": adam(t.parameters(), cfg), "d": adam(d.parameters(), cfg)}
    # scratches belong to the scratch model: the quality model (no block) trains on none, as the authors'
    batches = _batches(cfg, data, ctx, "mapping", "pairs", "batch_size", cfg.scratch_p if cfg.nonlocal_block else 0.0)

    def step(i: int, batch: tuple) -> dict[str, float]:
        x, y, mask = _to(batch, ctx.device)
        with ctx.autocast():
            with torch.no_grad():
                z_x, z_y = vae1.encode(x), vae2.encode(y)
            z = t(z_x, mask)  # the mask reaches the nonlocal block; a mapping without one ignores it
            out = vae2.decode(z)
            l1 = F.l1_loss(z, z_y)
            fake = torch.cat([x, out], 1)
            adv, parts, pred_real = _generator_terms(cfg, d, fake, torch.cat([x, y], 1), vgg)
            loss = cfg.latent_l1 * l1 + adv
        loss_t = _update(opt["t"], loss)
        loss_d = _discriminator_step(ctx, d, opt["d"], pred_real, fake)
        return {"loss": loss_t, "loss_d": loss_d, "latent_l1": l1.item(), **parts}

    phase = _phase("mapping", {"mapping": t, "d": d}, opt, batches, step,
                   steps_per_epoch(cfg, len(data.clean), cfg.batch_size))
    return [phase], {"vae1": vae1, "vae2": vae2, "mapping": mapping}


def detector_phases(cfg, data, ctx) -> tuple[list[Phase], dict[str, torch.nn.Module]]:
    """Section 3.3: the U-Net on scratched degraded greyscale crops, class-balanced cross-entropy (eq. 7)."""
    unet = networks.ScratchUNet(base=cfg.detector_width)
    u = ctx.prepare_model(unet)
    opt = {"u": adam(u.parameters(), cfg)}
    batches = _batches(cfg, data, ctx, "detector", "detection", "batch_size")

    def step(i: int, batch: tuple) -> dict[str, float]:
        grey, mask = _to(batch, ctx.device)
        with ctx.autocast():
            loss = losses.class_balanced_bce(u(grey), mask, cfg.class_weight)
        return {"loss": _update(opt["u"], loss)}

    n_images = len(data.clean) + len(data.masked_old)
    phase = _phase("detector", {"detector": u}, opt, batches, step, steps_per_epoch(cfg, n_images, cfg.batch_size))
    return [phase], {"detector": unet}


PHASES = {"vaes": vae_phases, "mapping": mapping_phases, "detector": detector_phases}


def train(cfg, data, ctx) -> dict[str, torch.nn.Module]:
    """Train the stage's networks (module docstring); returns the networks the evaluation uses, and saves the
    trained ones as the trial's artifact (``vaes``, ``mapping`` or ``detector``) for later stages."""
    torch.manual_seed(ctx.seed * 1009 + ctx.rank)  # initialisation and the VAEs' sampling noise
    phases, nets = PHASES[cfg.stage](cfg, data, ctx)
    run_phases(cfg, phases, ctx)
    for net in nets.values():
        net.eval()
    if cfg.stage == "vaes":
        ctx.save_artifact(VAES, {"ngf": cfg.ngf, "vae1": nets["vae1"].state_dict(),
                                 "vae2": nets["vae2"].state_dict()})
    elif cfg.stage == "mapping":
        ctx.save_artifact(MAPPING, {"ngf": cfg.ngf, "width": cfg.mapping_width,
                                    "nonlocal_block": cfg.nonlocal_block, "mapping": nets["mapping"].state_dict()})
        if (source := ctx.sources.get(DETECTOR)) is not None:
            nets["detector"] = load_detector(source, ctx.device)
    else:
        ctx.save_artifact(DETECTOR, {"width": cfg.detector_width, "detector": nets["detector"].state_dict()})
    return nets
