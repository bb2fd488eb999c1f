"""Evaluation of the three stages on the held-out synthetic set (the paper evaluates on synthetic degradations of
DIV2K with PSNR, SSIM, LPIPS and FID; Section 4).

Every test image is a clean crop y and its degraded version x (the authors' pipeline, with scratches pasted on
about half of them: ``data.TestImage``). Rows of ``evaluations``, one per (trial, image, method):

* stage ``vaes``: ``vae1`` = G_R,X(E_R,X(x)) against x (how well VAE1 reconstructs degraded photos), ``vae2`` =
  G_Y(E_Y(y)) against y (an upper bound on what the mapping can give back); both from the latent means. The trial
  metric ``latent_gap`` measures the paper's claim that VAE1 maps R and X into one latent space (Section 3.1): the
  Frechet distance between Gaussians fitted to the latent vectors (one per latent position) of E_R,X(r) over
  centre crops of the old photos (the training ones: there are no held-out old photos) and of E_R,X(x) over the
  test images (:func:`frechet`; ours, the paper shows the gap only as a t-SNE figure).
* stage ``mapping``: ``restored`` = G_Y(T(E_R,X(x))) against y, the whole pipeline; the baselines in the same table:
  ``degraded`` (x itself), ``no_mapping`` (G_Y(E_R,X(x)): the two latent spaces without T, the ablation that
  shows what T learned) and ``classical`` (scikit-image's non-local-means denoising, then biharmonic inpainting
  of the scratch mask). The mask the nonlocal block and the inpainting use is the detector's at threshold 0.4 when
  the sweep names ``from_trials.detector``, else the true mask of the synthetic scratches (``mask_source``);
  ``mask_dilation`` 3x3 dilations of it, and ``paste_mask`` pastes it white on the scratch model's input (the
  authors' test does both with the detected mask).
* stage ``detector``: ``detector`` rows on the scratched test images: precision, recall, F1 and IoU of the
  thresholded mask (0.4) against the pasted scratches; an image where nothing is predicted has precision 0 (not
  undefined: dropping it from the mean would reward a detector that gives up on hard images).

PSNR and SSIM are scikit-image's on 8-bit RGB (data range 255). LPIPS and FID need pretrained networks that cannot
be downloaded here; they are not computed. Trial metrics are the means over images.
"""
from __future__ import annotations

import numpy as np
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity
from scipy.linalg import sqrtm
from scipy.ndimage import binary_dilation
from skimage.restoration import denoise_nl_means, estimate_sigma, inpaint_biharmonic

from sweeplab.api import Evaluation

from .config import THRESHOLD
from .data import grid_crops, to_image, to_tensor
from .degrade import greyscale, paste_scratches
from .train import DETECTOR

EXAMPLES = "examples"  # the artifact with a few test images' degraded / mask / restored / clean, for the plot
ROWS = {"image": str, "method": str, "scratched": bool, "mask_source": str, "psnr": float, "ssim": float,
        "precision": float, "recall": float, "f1": float, "iou": float}
METRICS = {"psnr": float, "ssim": float, "psnr_degraded": float, "ssim_degraded": float, "psnr_classical": float,
           "ssim_classical": float, "psnr_no_mapping": float,
           "ssim_no_mapping": float, "psnr_gain": float, "psnr_vae1": float, "ssim_vae1": float,
           "precision": float, "recall": float, "f1": float, "iou": float, "latent_gap": float, "test_images": int}


def quality(out: np.ndarray, target: np.ndarray) -> dict[str, float]:
    return {"psnr": float(peak_signal_noise_ratio(target, out, data_range=255)),
            "ssim": float(structural_similarity(target, out, data_range=255, channel_axis=-1))}


def mask_scores(predicted: np.ndarray, true: np.ndarray) -> dict[str, float]:
    """Precision, recall, F1 and IoU of a binary mask; nothing predicted where something is true has precision 0
    (module docstring); NaN where undefined (nothing predicted nor true)."""
    p, t = predicted.astype(bool), true.astype(bool)
    tp, fp, fn = float((p & t).sum()), float((p & ~t).sum()), float((~p & t).sum())
    nan = float("nan")
    precision = tp / (tp + fp) if tp + fp else (0.0 if tp + fn else nan)
    recall = tp / (tp + fn) if tp + fn else nan
    f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else nan
    return {"precision": precision, "recall": recall, "f1": f1, "iou": tp / (tp + fp + fn) if tp + fp + fn else nan}


def classical(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The classical baseline: non-local-means denoising (h = 0.8 x the estimated noise sigma, 5x5 patches, 13x13
    search, scikit-image's recommended settings), then biharmonic inpainting of the masked pixels."""
    img = image.astype(np.float64) / 255.0
    sigma = float(np.mean(estimate_sigma(img, channel_axis=-1)))
    out = denoise_nl_means(img, h=0.8 * max(sigma, 1e-3), sigma=sigma, patch_size=5, patch_distance=6,
                           channel_axis=-1, fast_mode=True)
    if mask.any():
        out = inpaint_biharmonic(out, mask.astype(bool), channel_axis=-1)
    return np.clip(np.rint(out * 255.0), 0, 255).astype(np.uint8)


def _batch(img: np.ndarray, device) -> torch.Tensor:
    return to_tensor(img)[None].to(device)


def _grey(img: np.ndarray, device) -> torch.Tensor:
    return _batch(greyscale(img)[..., :1], device)  # the detector's input: luminance in [-1, 1], as it trained


@torch.no_grad()
def detect(detector, img: np.ndarray, device) -> np.ndarray:
    """The detector's mask (H, W) of an image at the 0.4 threshold."""
    return (torch.sigmoid(detector(_grey(img, device)))[0, 0] > THRESHOLD).cpu().numpy()


def frechet(a: np.ndarray, b: np.ndarray) -> float:
    """Frechet distance between Gaussians fitted to the rows of ``a`` and of ``b`` (n, d):
    |mu_a - mu_b|^2 + tr(S_a + S_b - 2 (S_a S_b)^(1/2))."""
    mu_a, mu_b = a.mean(0), b.mean(0)
    s_a, s_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root = sqrtm(s_a @ s_b).real
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(s_a + s_b - 2 * root))


@torch.no_grad()
def latent_gap(encode, old: list[np.ndarray], degraded: list[np.ndarray], crop: int, device) -> float:
    """:func:`frechet` between the latent vectors of E(r) over centre crops of ``old`` (the loaded old photos, at
    least ``crop`` on a side: :mod:`.files` scales smaller ones up) and of E(x) over ``degraded`` (module
    docstring); NaN without old photos."""
    def vectors(images):
        z = torch.cat([encode(_batch(img, device)).float() for img in images])
        return z.permute(0, 2, 3, 1).reshape(-1, z.shape[1]).cpu().double().numpy()
    if not old or not degraded:
        return float("nan")
    return frechet(vectors([grid_crops(img, crop, 1)[0] for img in old]), vectors(degraded))


def prepared(image: np.ndarray, mask: np.ndarray, cfg) -> tuple[np.ndarray, np.ndarray]:
    """(input, mask) of the scratch model: the mask dilated ``mask_dilation`` times by 3x3 and, with
    ``paste_mask``, pasted white on the input (the authors' test); as they are without the block."""
    if not cfg.nonlocal_block:
        return image, mask
    if cfg.mask_dilation:
        mask = binary_dilation(mask, np.ones((3, 3), bool), iterations=cfg.mask_dilation)
    return (paste_scratches(image, mask) if cfg.paste_mask else image), mask


def _row(image, method, scratched, mask_source=None, **values) -> dict:
    return {"image": image.name, "method": method, "scratched": scratched, "mask_source": mask_source, **values}


@torch.no_grad()
def evaluate(cfg, nets, data, ctx) -> Evaluation:
    device = ctx.device
    rows, examples = [], []
    with ctx.autocast():  # the networks' forward passes (dtype: bfloat16); to_image reads them as float
        for k, image in enumerate(data.test):
            scratched = bool(image.mask.any())
            if cfg.stage == "vaes":
                for name, target in (("vae1", image.degraded), ("vae2", image.clean)):  # each its own input
                    out = to_image(nets[name](_batch(target, device))[0])
                    rows.append(_row(image, name, scratched, **quality(out, target)))
            elif cfg.stage == "mapping":
                if DETECTOR in nets:
                    mask, mask_source = detect(nets[DETECTOR], image.degraded, device), "detector"
                else:
                    mask, mask_source = image.mask > 0.5, "true"
                x_in, mask = prepared(image.degraded, mask, cfg)
                x = _batch(x_in, device)
                m = torch.as_tensor(mask, dtype=torch.float32, device=device)[None, None]
                z_x = nets["vae1"].encode(x)
                z = nets["mapping"](z_x, m)  # without the nonlocal block the mask is ignored
                restored = to_image(nets["vae2"].decode(z)[0])
                unmapped = to_image(nets["vae2"].decode(z_x)[0])
                baseline = classical(image.degraded, mask)
                for method, out in (("restored", restored), ("no_mapping", unmapped), ("degraded", image.degraded),
                                    ("classical", baseline)):
                    rows.append(_row(image, method, scratched, mask_source, **quality(out, image.clean)))
                if k < cfg.n_examples:
                    examples.append({"name": image.name, "degraded": image.degraded, "mask": mask.astype(np.uint8),
                                     "restored": restored, "classical": baseline, "clean": image.clean})
            elif scratched:
                predicted = detect(nets[DETECTOR], image.degraded, device)
                rows.append(_row(image, "detector", True, **mask_scores(predicted, image.mask > 0.5)))
                if k < 2 * cfg.n_examples:
                    examples.append({"name": image.name, "degraded": image.degraded,
                                     "mask": predicted.astype(np.uint8), "true_mask": image.mask.astype(np.uint8)})
        metrics = summarise(cfg.stage, rows, len(data.test))
        if cfg.stage == "vaes":
            old = [data.old[k] for k in range(min(len(data.old), cfg.n_test))]
            metrics["latent_gap"] = latent_gap(nets["vae1"].encode, old, [t.degraded for t in data.test], cfg.crop,
                                               device)
    if examples:
        ctx.save_artifact(EXAMPLES, {"stage": cfg.stage, "examples": examples})
    return Evaluation(metrics=metrics, rows=rows)


def _mean(rows, method, key) -> float:
    values = [r[key] for r in rows if r["method"] == method and np.isfinite(r[key])]
    return float(np.mean(values)) if values else float("nan")


def summarise(stage: str, rows: list[dict], n_images: int) -> dict[str, float]:
    """The trial metrics: means over the test images of the stage's rows (module docstring)."""
    out: dict[str, float] = {"test_images": n_images}
    if stage == "vaes":
        out.update(psnr=_mean(rows, "vae2", "psnr"), ssim=_mean(rows, "vae2", "ssim"),
                   psnr_vae1=_mean(rows, "vae1", "psnr"), ssim_vae1=_mean(rows, "vae1", "ssim"))
    elif stage == "mapping":
        out.update({f"{key}{suffix}": _mean(rows, method, key) for method, suffix in
                    (("restored", ""), ("no_mapping", "_no_mapping"), ("degraded", "_degraded"),
                     ("classical", "_classical"))
                    for key in ("psnr", "ssim")})
        out["psnr_gain"] = out["psnr"] - out["psnr_degraded"]
    else:
        out.update({key: _mean(rows, "detector", key) for key in ("precision", "recall", "f1", "iou")})
    return out
