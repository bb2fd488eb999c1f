"""Algorithm 1 of Kanezaki, "Unsupervised image segmentation by backpropagation", ICASSP 2018 (Section 2).

For one image I = {v_n} (RGB in [0, 1]): initialise a fresh network (``model.SegNet``), extract K SLIC superpixels
{S_k} once (Section 2.2), then for t = 1..T:

    y'  = SegNet(I)                              normalised responses (Sections 2.1, 2.3)
    c_n = argmax_i y'_{n,i}                      eq. (1)
    c'_n = most frequent c in S_k, n in S_k      superpixel refinement (Section 2.2)
    L   = cross-entropy(y', c')                  SoftmaxLoss (Section 2.4)
    SGD with momentum on L                       Update (Section 2.4: lr 0.1, momentum 0.9)

:func:`segment` is our implementation: everything stays on the device and the refinement is one ``bincount``
(:func:`refine_labels`). :func:`authors_loop_segment` re-does the loop the way the authors' ``demo.py`` does it
(kanezaki/pytorch-unsupervised-segmentation): labels copied to numpy every iteration and refined by a Python loop
over the superpixels; it is the baseline of ``bench/segmentation.py``. Both refinements give identical labels;
the two loops differ only in the layout of the loss ((1, q, H, W) here, (N, q) there, as ``demo.py``), whose float
sums round differently, so for the same seed the label maps agree exactly on small images and drift apart
slowly on large ones (about 95-98% of pixels equal after 20 iterations on a 321 x 481 photo) as near-ties of the
argmax flip. Keeping the (1, q, H, W) layout saves a copy of the responses and is faster on the CPU.

Facts taken from ``demo.py`` and kept: SLIC with ``compactness`` = 100, ``n_segments`` = K and skimage's other
defaults, computed once per image; input = 8-bit image / 255; the loss is the mean cross-entropy between the
normalised responses and the refined labels; SGD(lr, momentum 0.9); optional early stop once the number of
distinct (unrefined) labels of an iteration is <= ``min_labels`` (checked after that iteration's update); the
returned labels are the argmax of one more forward pass *after* the last update, BatchNorm still on the image's
own statistics (train mode), as in ``demo.py``'s ``--visualize 0`` path.

Deviations from ``demo.py``, and why:

* Colour order: ``demo.py`` reads the image with OpenCV, so both SLIC and the network see BGR (SLIC's Lab
  conversion then treats B as R). We give both true RGB, as the paper states (Section 2.1).
* Ties in the refinement: ``demo.py`` keeps the smallest label among the most frequent ones (``np.unique`` sorts,
  ``np.argmax`` takes the first maximum). :func:`refine_labels` has the same rule (first maximum of
  ``torch.argmax`` over labels in increasing order), so the refined labels are identical, not merely close.
* Early stop: off by default (``min_labels`` = 0), since the paper runs all T iterations; ``demo.py`` uses 3.

Precision: :func:`segment` runs the network's forward passes under ``autocast`` (the trial's ``ctx.autocast``, for
``dtype: bfloat16``) and the loss on float32 responses. The argmax then ranks bfloat16 responses (8 significant
bits): near-ties between the top two of the q responses become exact ties, which go to the smaller label, for a few
per cent of the pixels; the superpixel refinement smooths most of them out. float32 (the default) is the paper's.
"""
from __future__ import annotations

import contextlib
from typing import Callable, ContextManager

import numpy as np
import torch
import torch.nn.functional as F
from skimage.segmentation import slic
from skimage.util import img_as_float32

from .model import SegNet

# log(t, n_labels, loss): called after the update of iteration t = 1, 2, ... with the number of distinct
# (unrefined) labels of that iteration's forward pass and its loss.
LogFn = Callable[[int, int, float], None]


def superpixels(image: np.ndarray, K: int, compactness: float) -> np.ndarray:
    """SLIC superpixels {S_k} (Section 2.2) with the arguments of ``demo.py``: ``n_segments=K``,
    ``compactness``, skimage's defaults otherwise (10 iterations, no smoothing, Lab distance, connectivity
    enforced). ``image``: (H, W, 3) RGB, float in [0, 1] (8-bit also accepted). Returns (H, W) int64 labels
    0..n_sp-1, all used (SLIC may return fewer or more than K)."""
    sp = slic(_unit_rgb(image), n_segments=K, compactness=compactness, start_label=0, channel_axis=-1)
    _, dense = np.unique(sp, return_inverse=True)  # contiguous ids whatever skimage's numbering
    return dense.reshape(sp.shape).astype(np.int64)


@torch.no_grad()
def refine_labels(labels: torch.Tensor, sp: torch.Tensor, n_sp: int, q: int) -> torch.Tensor:
    """Superpixel refinement (Section 2.2, inner loop of Algorithm 1), vectorised.

    ``labels`` c_n in [0, q) and ``sp`` superpixel ids in [0, n_sp), integer tensors of the same shape and device.
    Every pixel gets the most frequent label of its superpixel: one ``bincount`` of ``sp * q + c`` gives the
    (n_sp, q) histogram, its row-wise argmax the majority, and indexing by ``sp`` spreads it back. Ties go to the
    smallest label (``torch.argmax`` returns the first maximal index), the rule of ``demo.py``. Same shape as
    ``labels``.
    """
    if labels.shape != sp.shape:
        raise ValueError(f"labels {tuple(labels.shape)} and superpixels {tuple(sp.shape)} differ in shape")
    flat_sp = sp.reshape(-1).long()
    hist = torch.bincount(flat_sp * q + labels.reshape(-1).long(), minlength=n_sp * q).view(n_sp, q)
    return hist.argmax(dim=1)[flat_sp].view(labels.shape)


def _unit_rgb(image: np.ndarray) -> np.ndarray:
    """(H, W, 3) as float32 in [0, 1]: integer images are divided by their type's maximum (8-bit: / 255, as
    ``demo.py``); float images are taken to be in [0, 1] already (Section 2.1)."""
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) RGB image, got shape {image.shape}")
    return img_as_float32(image)


def _fresh_model(cfg, seed: int, device: torch.device) -> SegNet:
    """A new SegNet for one image, initialised from ``seed`` on the CPU (same weights on every device)."""
    model = SegNet(cfg.M, cfg.p, cfg.q)
    model.reset_parameters(torch.Generator().manual_seed(int(seed)))
    return model.to(device).train()  # train mode: BatchNorm over the N pixels of this image (Section 2.1)


def prepare(image: np.ndarray, cfg, device, seed: int):
    """The set-up lines of Algorithm 1, shared by both loops: (device, superpixels (H, W) numpy, image tensor
    (1, 3, H, W) on the device, fresh seeded SegNet in train mode, its SGD optimiser)."""
    device = torch.device(device)
    rgb = _unit_rgb(image)
    sp = superpixels(rgb, cfg.K, cfg.compactness)
    v = torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1)))[None].to(device)
    model = _fresh_model(cfg, seed, device)
    optimizer = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum)
    return device, sp, v, model, optimizer


def _final_labels(model: SegNet, v: torch.Tensor,
                  autocast: Callable[[], ContextManager] = contextlib.nullcontext) -> np.ndarray:
    with torch.no_grad(), autocast():
        return model(v).argmax(dim=1)[0].cpu().numpy()


def segment(image: np.ndarray, cfg, device, seed: int, log: LogFn | None = None,
            autocast: Callable[[], ContextManager] = contextlib.nullcontext) -> np.ndarray:
    """Algorithm 1 on one (H, W, 3) RGB image; returns the (H, W) int64 labels c_n (values in [0, q)).

    Uses ``cfg.M, p, q`` (network), ``K, compactness`` (SLIC), ``T, lr, momentum`` (training) and
    ``min_labels`` (early stop when > 0, see the module docstring). The network is initialised from ``seed``.
    The labels returned are the argmax of a forward pass after the last update (as ``demo.py``). ``log`` (see
    ``LogFn``) is called after every iteration; the number of calls is the number of iterations run.
    ``autocast``: a context manager for the forward passes (module docstring, Precision).

    Fast path: image, superpixel ids and labels stay on ``device``; the refinement is :func:`refine_labels`
    under ``no_grad``; the host is only asked for a scalar when ``log`` is given or ``min_labels`` > 0.
    """
    device, sp_np, v, model, optimizer = prepare(image, cfg, device, seed)
    n_sp, q = int(sp_np.max()) + 1, cfg.q
    sp = torch.from_numpy(sp_np.reshape(-1)).to(device)
    for t in range(1, cfg.T + 1):
        optimizer.zero_grad(set_to_none=True)
        with autocast():
            y = model(v).float()  # (1, q, H, W)
        with torch.no_grad():
            c = y.argmax(dim=1).reshape(-1)
            target = refine_labels(c, sp, n_sp, q).view(y.shape[0], *y.shape[2:])
        loss = F.cross_entropy(y, target)
        loss.backward()
        optimizer.step()
        if log is not None or cfg.min_labels > 0:
            n_labels = int(torch.bincount(c, minlength=q).count_nonzero())
            if log is not None:
                log(t, n_labels, loss.item())
            if 0 < cfg.min_labels and n_labels <= cfg.min_labels:
                break
    return _final_labels(model, v, autocast)


def authors_refine(labels: np.ndarray, members: list[np.ndarray]) -> np.ndarray:
    """The refinement as ``demo.py`` does it, in place on the flat numpy ``labels``: for each superpixel (its
    pixel indices in ``members``), ``np.unique`` of its labels, one count per distinct label, the first most
    frequent written back. Same result as :func:`refine_labels`."""
    for idx in members:
        values = labels[idx]
        distinct = np.unique(values)
        counts = np.array([np.count_nonzero(values == u) for u in distinct])
        labels[idx] = distinct[np.argmax(counts)]
    return labels


def superpixel_members(sp: np.ndarray) -> list[np.ndarray]:
    """Flat pixel indices of each superpixel, built once per image as ``demo.py`` does (one search each)."""
    flat = sp.reshape(-1)
    return [np.flatnonzero(flat == k) for k in np.unique(flat)]


def authors_loop_segment(image: np.ndarray, cfg, device, seed: int, log: LogFn | None = None) -> np.ndarray:
    """The per-image loop as ``demo.py`` runs it (our code, same steps), the baseline of ``bench/segmentation.py``.

    Same network, initialisation, SLIC and stopping rule as :func:`segment`; the differences are only in how the
    work is done: the responses are reshaped to (N, q) before the loss, the labels are copied to numpy every
    iteration, the distinct labels are counted with ``np.unique`` every iteration, and each superpixel is
    refined in a Python loop (:func:`authors_refine`) over pixel-index lists built once
    (:func:`superpixel_members`), before copying the result back to the device.
    """
    device, sp_np, v, model, optimizer = prepare(image, cfg, device, seed)
    q = cfg.q
    members = superpixel_members(sp_np)
    for t in range(1, cfg.T + 1):
        optimizer.zero_grad()
        y = model(v)[0].permute(1, 2, 0).reshape(-1, q)  # (N, q)
        c = y.argmax(dim=1).cpu().numpy()
        n_labels = len(np.unique(c))
        authors_refine(c, members)
        loss = F.cross_entropy(y, torch.from_numpy(c).to(device))
        loss.backward()
        optimizer.step()
        if log is not None:
            log(t, n_labels, loss.item())
        if 0 < cfg.min_labels and n_labels <= cfg.min_labels:
            break
    return _final_labels(model, v)
