"""Test-time evaluation of the `compression` task (Dumas et al., ICASSP 2018, Sections 3.1 and 4).

Autoencoder (data flow per test image X and step multiplier beta)::

    Y = g_e(X)                                   model.encode, (1, m, H/16, W/16)
    q = round((Y - mu) / (beta * delta))         mu_i: per-map means from the extra set (Section 3.1),
                                                 delta_i: learned steps (case 2) or 1 (cases 1 and 3)
    Y_hat = q * beta * delta + mu                uniform scalar quantisation, reconstruction at bin centres
    X_hat = g_d(Y_hat)                           model.decode; PSNR after clipping to [16, 235] and rounding

Rate: ``bpp`` is the paper's estimate, the empirical entropy of q (i.i.d. per map); ``bpp_coded`` the size of the
stream of :mod:`.coder`, which codes q with per-map probabilities estimated on the extra images quantised at the
same beta (as the authors' coder does), so the model, mu_i and those statistics decode it with nothing else
transmitted; every stream is decoded back and a mismatch stops the evaluation. ``rate_gap_bpp = bpp_coded - bpp``
is the paper's comparison of exact and estimated rates (under 0.04 bpp there).

Anchors (``codec`` jpeg / jpeg2000 / hevc): one row per (setting, image), the rate being the real file size.

Every row has the keys :data:`ROW_KEYS` (None where a key does not apply) so all trials make one table.
Under ``dtype: bfloat16`` g_e and g_d run under the trial's autocast; quantisation, rates and coding stay float32
(``model.py``).
"""
from __future__ import annotations

import contextlib
from typing import Callable, ContextManager

import numpy as np
import torch

from sweeplab.api import Evaluation

from . import anchors, coder
from .metrics import empirical_entropy_bpp, mse, psnr

# The columns of the evaluation rows and their types (the task's ``eval_columns``): ``beta`` is null in anchor
# rows, ``quality`` (the JPEG quality or JPEG 2000 target bpp) in autoencoder rows.
ROW_TYPES = {"method": str, "beta": float, "quality": float, "image": str, "bpp": float, "bpp_coded": float,
             "rate_gap_bpp": float, "psnr": float, "mse": float}
ROW_KEYS = tuple(ROW_TYPES)
SUMMARY_KEYS = ("psnr", "bpp", "bpp_coded", "rate_gap_bpp")
# The final metrics :func:`evaluate` returns (the task's ``metrics``).
METRIC_TYPES = {**{key: float for key in SUMMARY_KEYS}, "mean_rate_gap_bpp": float}


def quantize(y: torch.Tensor, mu: torch.Tensor, delta: torch.Tensor, beta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Centre with mu_i and quantise with step beta * delta_i (Section 4) -> (integer indices, y_hat)."""
    step = (beta * delta).reshape(1, -1, 1, 1).to(y)
    mu = mu.reshape(1, -1, 1, 1).to(y)
    q = torch.round((y - mu) / step)
    return q.to(torch.int64), q * step + mu


def _row(**values) -> dict:
    unknown = set(values) - set(ROW_KEYS)
    if unknown:
        raise KeyError(f"unknown row keys {sorted(unknown)}")
    return {key: values.get(key) for key in ROW_KEYS}


def _means(rows: list[dict]) -> dict[str, float]:
    return {key: float(np.mean([r[key] for r in rows])) for key in SUMMARY_KEYS}


def _log_line(rows: list[dict]) -> str:
    m = _means(rows)
    return f"psnr {m['psnr']:.2f} dB, bpp {m['bpp']:.4f} (coded {m['bpp_coded']:.4f}), {len(rows)} images"


def _coder_models(encode, mu: torch.Tensor, delta: torch.Tensor, betas, extra_images, device,
                  autocast: Callable[[], ContextManager] = contextlib.nullcontext) -> dict[float, list]:
    """Per beta, the coder's per-map models (:mod:`.coder`) from the extra images' latents, centred with mu_i and
    quantised with steps beta * delta_i as the test images are: statistics every decoder of the model has."""
    counts = {beta: coder.SymbolCounts(mu.numel()) for beta in betas}
    for x in extra_images:
        with autocast():
            y = encode(x.to(device))  # g_e does not depend on beta
        for beta in betas:
            for q in quantize(y, mu, delta, beta)[0].cpu().numpy():
                counts[beta].add(q)
    return {beta: c.models() for beta, c in counts.items()}


@torch.no_grad()
def evaluate_autoencoder(model: torch.nn.Module, betas, test_images, extra_images, device: torch.device,
                         log=print, autocast: Callable[[], ContextManager] = contextlib.nullcontext) -> list[dict]:
    """Rows for each beta in ``betas`` and each test image ``(name, (1, 1, H, W) float tensor)``; the coder's
    statistics come from ``extra_images`` ((1, 1, H, W) float tensors: the trial's extra set, the one mu_i was
    measured on unless the model comes from another sweep's trial). ``autocast``: the trial's
    (``ctx.autocast``), around g_e and g_d."""
    model.eval()
    delta = model.steps().detach().to(device)
    mu = model.latent_means.detach().to(device)
    models = _coder_models(model.encode, mu, delta, betas, extra_images, device, autocast)
    with autocast():  # g_e does not depend on beta
        latents = [(name, x, model.encode(x.to(device))) for name, x in test_images]
    rows = []
    for beta in betas:
        beta_rows = []
        for name, x, y in latents:
            q, y_hat = quantize(y, mu, delta, float(beta))
            with autocast():
                x_hat = model.decode(y_hat)
            indices = q[0].cpu().numpy()
            n_pixels = x.shape[-2] * x.shape[-1]
            bpp = empirical_entropy_bpp(indices, n_pixels)
            n_bits, decoded = coder.code(indices, models[beta])
            if not np.array_equal(decoded, indices):
                raise RuntimeError(f"lossless coding of {name} at beta={beta} does not decode to its latents")
            bpp_coded = n_bits / n_pixels
            beta_rows.append(_row(method="autoencoder", beta=float(beta), image=name, bpp=bpp,
                                  bpp_coded=bpp_coded, rate_gap_bpp=bpp_coded - bpp,
                                  psnr=psnr(x, x_hat), mse=mse(x, x_hat)))
        log(f"beta={float(beta):g}: {_log_line(beta_rows)}")
        rows += beta_rows
    return rows


def evaluate_codec(codec: str, settings, test_images, log=print, **options) -> list[dict]:
    """Rows of a JPEG / JPEG 2000 / HEVC anchor for each setting and test image (``options``: the encoder's,
    :func:`.anchors.encode_decode`)."""
    rows = []
    for setting in settings:
        setting_rows = [_row(method=codec, quality=float(r["setting"]), image=r["image"], bpp=r["bpp"],
                             bpp_coded=r["bpp"], rate_gap_bpp=0.0, psnr=r["psnr"], mse=r["mse"])
                        for r in anchors.evaluate_anchor(codec, [setting], test_images, **options)]
        label = "target bpp" if codec == "jpeg2000" else "quality"
        log(f"{codec} {label} {setting:g}: {_log_line(setting_rows)}")
        rows += setting_rows
    return rows


def evaluate(cfg, state, data, ctx) -> Evaluation:
    """The task's evaluation. Metrics: means over the test images of psnr, bpp, bpp_coded and rate_gap_bpp at
    beta = 1 (the first beta when 1 is not in ``cfg.betas``) for the autoencoder, at the middle setting for an
    anchor; plus ``mean_rate_gap_bpp`` over all rows."""
    if not data.test_images:
        raise ValueError("no test image to evaluate on")
    if cfg.codec == "autoencoder":
        if state is None:
            raise ValueError("codec=autoencoder needs a trained model to evaluate")
        betas = tuple(float(b) for b in cfg.betas)
        if not betas:
            raise ValueError("betas is empty: nothing to evaluate")
        extra = getattr(data, "extra_images", None)
        if not extra:
            raise ValueError("codec=autoencoder needs data.extra_images: the coded rate's probabilities come from "
                             "the extra image set")
        rows = evaluate_autoencoder(ctx.unwrap(state), betas, data.test_images, extra, ctx.device, ctx.log,
                                    ctx.autocast)
        ref = 1.0 if 1.0 in betas else betas[0]
        chosen = [r for r in rows if r["beta"] == ref]
    elif cfg.codec in anchors.CODECS:
        settings = tuple({"jpeg": cfg.jpeg_qualities, "jpeg2000": cfg.jpeg2000_rates,
                          "hevc": cfg.hevc_qualities}[cfg.codec])
        options = {"preset": cfg.hevc_preset, "tune": cfg.hevc_tune} if cfg.codec == "hevc" else {}
        rows = evaluate_codec(cfg.codec, settings, data.test_images, ctx.log, **options)
        middle = float(settings[len(settings) // 2])
        chosen = [r for r in rows if r["quality"] == middle]
    else:
        raise ValueError(f"unknown codec {cfg.codec!r}")
    metrics = _means(chosen)
    metrics["mean_rate_gap_bpp"] = float(np.mean([r["rate_gap_bpp"] for r in rows]))
    return Evaluation(metrics=metrics, rows=rows)
