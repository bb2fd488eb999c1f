"""The restoration task's training and evaluation choices of issue 22: the quality mapping without holes and with
TTUR, the plain nonlocal arm, the latent-gap measure against an independent computation, the detector's precision
on empty predictions, the literal class weight, the one-sided latent term and the authors' mask preparation."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from sweeplab.config import build
from sweeplab.context import LocalContext
from sweeplab.tasks.restoration import data, evaluate, losses, networks, train
from sweeplab.tasks.restoration.config import RestorationConfig

SMALL = {"crop": 32, "n_test": 2, "ngf": 4, "mapping_width": 8, "detector_width": 4, "epochs": 1, "decay_epochs": 0,
         "loader_workers": 0, "batch_size": 2}


class Source:
    """A stage-1 trial's ``vaes`` artifact, as ``ctx.sources["vaes"]`` gives it."""

    def load(self, name):
        return {"ngf": 4, "vae1": networks.VAE(4).state_dict(), "vae2": networks.VAE(4).state_dict()}


@pytest.fixture(scope="module")
def embedded():
    return data.load_data(build(RestorationConfig, SMALL))


def mapping_phase(embedded, **config):
    cfg = build(RestorationConfig, {**SMALL, "stage": "mapping", **config})
    ctx = LocalContext(verbose=False, device=torch.device("cpu"))
    ctx.sources = {"vaes": Source()}
    return train.mapping_phases(cfg, embedded, ctx)[0][0]


def test_the_quality_mapping_trains_without_holes_and_the_authors_choice_is_ttur(embedded):
    quality = mapping_phase(embedded, optimizer="authors")
    assert quality.batches.scratch_p == 0.0 and not quality.batches[0][2].any()
    assert [(g["lr"], g["betas"]) for o in quality.opts.values() for g in o.param_groups] == \
        [(1e-4, (0.0, 0.9)), (4e-4, (0.0, 0.9))]
    scratch = mapping_phase(embedded, optimizer="authors", nonlocal_block=True)
    assert scratch.batches.scratch_p == 0.5
    assert [(g["lr"], g["betas"]) for o in scratch.opts.values() for g in o.param_groups] == \
        [(2e-4, (0.5, 0.999))] * 2


def test_the_plain_nonlocal_arm_ignores_the_mask_and_changes_the_network():
    torch.manual_seed(0)
    partial = networks.Mapping(channels=4, width=8, n_res=1, nonlocal_block=True, zero_w=False)
    plain = networks.Mapping(channels=4, width=8, n_res=1, nonlocal_block=True, zero_w=False, plain=True)
    plain.load_state_dict(partial.state_dict())  # the same weights: only the switch differs
    z, hole = torch.randn(1, 4, 8, 8), torch.zeros(1, 1, 32, 32)
    hole[..., :8, :8] = 1
    assert torch.equal(plain(z, hole), plain(z, torch.zeros_like(hole)))  # blind to the mask
    assert not torch.allclose(partial(z, hole), partial(z, torch.zeros_like(hole)))
    # without holes the partial block leaves the local features; the plain one adds its global branch everywhere
    head = partial.head(z)
    assert torch.allclose(partial(z, torch.zeros_like(hole)), partial.body(head))
    assert torch.allclose(plain(z, hole), plain.body(head + partial.nonlocal_block.plain(head)))
    cfg = build(RestorationConfig, {**SMALL, "stage": "mapping", "nonlocal_block": True, "nonlocal_kind": "plain"})
    assert train.build_mapping(cfg).plain


def _frechet_by_eigenvalues(a, b) -> float:
    """|mu_a - mu_b|^2 + tr S_a + tr S_b - 2 sum sqrt(eig(S_a^1/2 S_b S_a^1/2)), the covariances by hand."""
    ca, cb = a - a.mean(0), b - b.mean(0)
    s_a, s_b = ca.T @ ca / (len(a) - 1), cb.T @ cb / (len(b) - 1)
    w, v = np.linalg.eigh(s_a)
    root_a = v @ np.diag(np.sqrt(np.clip(w, 0, None))) @ v.T
    cross = np.sqrt(np.clip(np.linalg.eigvalsh(root_a @ s_b @ root_a), 0, None)).sum()
    return float(((a.mean(0) - b.mean(0)) ** 2).sum() + np.trace(s_a) + np.trace(s_b) - 2 * cross)


def test_the_latent_gap_is_the_frechet_distance_of_the_latent_vectors():
    rng = np.random.default_rng(0)
    old = [rng.integers(0, 256, (12, 10, 3), dtype=np.uint8) for _ in range(2)]  # centre-cropped to 8 x 8
    degraded = [np.clip(rng.normal(150, 30, (8, 8, 3)), 0, 255).astype(np.uint8) for _ in range(3)]
    gap = evaluate.latent_gap(lambda x: x, old, degraded, 8, torch.device("cpu"))  # the identity "encoder"
    vec = lambda imgs: np.concatenate([i.reshape(-1, 3) / 127.5 - 1 for i in imgs])  # noqa: E731
    expected = _frechet_by_eigenvalues(vec([o[2:10, 1:9] for o in old]), vec(degraded))
    assert gap == pytest.approx(expected, rel=1e-6) and gap > 0.1
    assert evaluate.latent_gap(lambda x: x, degraded, degraded, 8, torch.device("cpu")) == pytest.approx(0, abs=1e-6)


def test_a_detector_that_predicts_nothing_has_precision_zero():
    true = np.zeros((8, 8), bool)
    true[2, :] = True
    scores = evaluate.mask_scores(np.zeros((8, 8), bool), true)
    assert scores["precision"] == 0.0 and scores["recall"] == 0.0 and scores["f1"] == 0.0
    rows = [{"method": "detector", **scores}, {"method": "detector", **evaluate.mask_scores(true, true)}]
    assert evaluate.summarise("detector", rows, 2)["precision"] == 0.5


def test_the_literal_class_weight_is_the_scratch_fraction():
    logits, target = torch.randn(2, 1, 4, 4), (torch.rand(2, 1, 4, 4) < 0.25).float()
    target[0, 0, 0, 0] = 1
    alpha = target.flatten(1).mean(1).view(-1, 1, 1, 1)
    p = torch.sigmoid(logits)
    expected = (-alpha * target * torch.log(p) - (1 - alpha) * (1 - target) * torch.log(1 - p)).mean()
    assert losses.class_balanced_bce(logits, target, "scratch").item() == pytest.approx(expected.item(), rel=1e-5)
    assert losses.class_balanced_bce(logits, target).item() != pytest.approx(expected.item(), rel=1e-3)


def test_the_one_sided_latent_term_judges_only_r_as_x():
    preds = [[torch.randn(6, 1, 3, 3)]]  # D_R,X's one scale, its last output; samples 0, 2, 4 are R
    kinds = [(torch.tensor(rows), w, old) for rows, w, old in train.latent_shares(range(6), 6, 1)]
    r, x = preds[0][0][0::2], preds[0][0][1::2]
    one = train.latent_fool(preds, kinds, "r_to_x")
    assert one.item() == pytest.approx(F.mse_loss(r, torch.zeros_like(r)).item(), rel=1e-6)
    both = 0.5 * (F.mse_loss(r, torch.zeros_like(r)) + F.mse_loss(x, torch.ones_like(x)))
    assert train.latent_fool(preds, kinds, "both").item() == pytest.approx(both.item(), rel=1e-6)


def test_the_scratch_model_gets_the_mask_dilated_and_pasted_white():
    image, mask = np.full((8, 8, 3), 40, np.uint8), np.zeros((8, 8), bool)
    mask[4, 4] = True
    cfg = build(RestorationConfig, {"stage": "mapping", "nonlocal_block": True, "mask_dilation": 1,
                                    "paste_mask": True})
    x, m = evaluate.prepared(image, mask, cfg)
    assert m.sum() == 9 and m[3:6, 3:6].all() and (x[m] == 255).all() and (x[~m] == 40).all()
    quality = build(RestorationConfig, {"stage": "mapping", "mask_dilation": 1, "paste_mask": True})
    assert evaluate.prepared(image, mask, quality)[1] is mask


@pytest.mark.parametrize("vgg_input, imagenet_norm", [("imagenet", True), ("code", False)])
def test_vgg_input_picks_what_vgg19_sees(monkeypatch, tmp_path, vgg_input, imagenet_norm):
    asked = []
    monkeypatch.setattr(networks, "load_vgg19", lambda path, norm: asked.append((path, norm)) or torch.nn.Identity())
    weights = tmp_path / "vgg19.pth"
    weights.touch()
    cfg = build(RestorationConfig, {"stage": "vaes", "vgg": 10.0, "vgg_weights": str(weights), "vgg_input": vgg_input})
    assert train._vgg(cfg, torch.device("cpu")) is not None and asked == [(str(weights), imagenet_norm)]
