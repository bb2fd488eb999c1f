"""The synthetic degradation of Wan et al. (CVPR 2020, Section 3.1 and its supplement; the operations and their
ranges are the authors' data loader, REFERENCES.md), the procedural scratches, and the embedded "aged print" domain.

X = degrade(Y): Gaussian blur, one noise (Gaussian, speckle or salt-and-pepper), a down-and-up resize and a JPEG
round trip, in a random order, each applied with probability ``p``; then greyscale with probability ``grey_p``.
Scratches are pasted white, ``img (1 - m) + 255 m`` (the authors' rule), on about half of the mapping stage's
samples (Section 3.2), not in stage 1. The authors never released their scratch textures nor their real old photos:
:func:`scratch_mask` is our procedural generator, and :func:`age_print` our stand-in for the real domain R, a
process different from :func:`degrade` so that the gap between R and X is real.

Every function takes and returns uint8 RGB arrays (H, W, 3) and draws from the ``numpy.random.Generator`` it is
given (never from global state), so the same seed gives the same image. Library operations only (Pillow,
scikit-image, scipy); no torch here.
"""
from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image

OPERATIONS = ("blur", "noise", "resize", "jpeg")  # the four of the random-order pipeline
NOISE_KINDS = ("gaussian", "speckle", "s&p")
LUMA = np.array([0.299, 0.587, 0.114], np.float32)  # ITU-R 601 luma, as PIL's "L"


@dataclass(frozen=True)
class Degradation:
    """The ranges of the authors' degradation (REFERENCES.md, "Synthetic degradation"); uniform draws in each range.

    p: probability of each of the four operations; blur_kernels: Gaussian kernel sides; blur_sigma: its sigma (px);
    noise_sigma: std of the Gaussian and speckle noise on the 0..255 scale; salt_pepper_amount: share of values
    replaced; salt_share: share of the replaced values set to 255 (the rest 0); resize_scale: each side's factor
    of the downscale; jpeg_quality: JPEG quality (integers, both ends included); grey_p: probability of greyscale.
    """
    p: float = 0.7
    blur_kernels: tuple[int, ...] = (3, 5, 7)
    blur_sigma: tuple[float, float] = (1.0, 5.0)
    noise_sigma: tuple[float, float] = (5.0, 50.0)
    salt_pepper_amount: tuple[float, float] = (0.0, 0.01)
    salt_share: tuple[float, float] = (0.3, 0.8)
    resize_scale: tuple[float, float] = (0.5, 1.0)
    jpeg_quality: tuple[int, int] = (40, 100)
    grey_p: float = 0.1

    def __post_init__(self):
        ranges = ("blur_sigma", "noise_sigma", "salt_pepper_amount", "salt_share", "resize_scale", "jpeg_quality")
        bad = [f"{name} {getattr(self, name)}" for name in ranges if getattr(self, name)[0] > getattr(self, name)[1]]
        bad += [f"blur kernel {k} (odd, >= 1)" for k in self.blur_kernels if k < 1 or k % 2 == 0]
        bad += [f"{name} {getattr(self, name)}" for name in ("p", "grey_p") if not 0 <= getattr(self, name) <= 1]
        if not 0 < self.resize_scale[0] or not 1 <= self.jpeg_quality[0] <= self.jpeg_quality[1] <= 100:
            bad.append(f"resize_scale {self.resize_scale} or jpeg_quality {self.jpeg_quality}")
        if bad:
            raise ValueError(f"Degradation: invalid {', '.join(bad)}")


AUTHORS = Degradation()
# the four operations without the greyscale draw: the held-out synthetic test's (the authors' never greys: a grey x
# beside a colour y asks for colour the input does not hold) and the mapping pairs', which grey x and y together
COLOUR = Degradation(grey_p=0.0)


def _uint8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def blur(img: np.ndarray, rng: np.random.Generator, params: Degradation = AUTHORS) -> np.ndarray:
    """Gaussian blur with a k x k kernel, k drawn from ``blur_kernels`` and sigma ~ U(blur_sigma):
    ``skimage.filters.gaussian`` per channel with ``truncate = (k // 2) / sigma``, so the kernel's radius is k // 2
    (a large sigma on a small kernel is a nearly flat box, as a k x k kernel of that sigma is). Borders mirrored."""
    from skimage.filters import gaussian
    k = int(params.blur_kernels[rng.integers(len(params.blur_kernels))])
    sigma = float(rng.uniform(*params.blur_sigma))
    out = gaussian(img.astype(np.float32), sigma, truncate=(k // 2) / sigma, mode="mirror", preserve_range=True,
                   channel_axis=-1)
    return _uint8(out)


def noise(img: np.ndarray, rng: np.random.Generator, params: Degradation = AUTHORS,
          kind: str | None = None) -> np.ndarray:
    """One noise (``kind`` one of :data:`NOISE_KINDS`; None draws it uniformly) through
    ``skimage.util.random_noise`` seeded from ``rng``: Gaussian (additive, std sigma ~ U(noise_sigma) / 255 of the
    range), speckle (``img + img n``, n of the same std: zero on black) or salt-and-pepper (amount ~
    U(salt_pepper_amount) of the values, each channel on its own; salt share ~ U(salt_share))."""
    from skimage.util import random_noise
    if kind is None:
        kind = NOISE_KINDS[rng.integers(len(NOISE_KINDS))]
    if kind not in NOISE_KINDS:
        raise ValueError(f"noise kind {kind!r}: one of {', '.join(NOISE_KINDS)}")
    if kind == "s&p":
        kwargs = {"amount": float(rng.uniform(*params.salt_pepper_amount)),
                  "salt_vs_pepper": float(rng.uniform(*params.salt_share))}
    else:
        kwargs = {"var": (float(rng.uniform(*params.noise_sigma)) / 255.0) ** 2}
    out = random_noise(img, mode=kind, rng=int(rng.integers(2 ** 32)), clip=True, **kwargs)
    return _uint8(out * 255.0)


def resize(img: np.ndarray, rng: np.random.Generator, params: Degradation = AUTHORS) -> np.ndarray:
    """Each side scaled by its own factor ~ U(resize_scale) with bicubic resampling (PIL), then back to the
    original size with nearest or bilinear resampling (drawn 50/50)."""
    h, w = img.shape[:2]
    small = (max(1, round(w * rng.uniform(*params.resize_scale))), max(1, round(h * rng.uniform(*params.resize_scale))))
    back = (Image.Resampling.NEAREST, Image.Resampling.BILINEAR)[rng.integers(2)]
    return np.asarray(Image.fromarray(img).resize(small, Image.Resampling.BICUBIC).resize((w, h), back))


def jpeg(img: np.ndarray, rng: np.random.Generator, params: Degradation = AUTHORS) -> np.ndarray:
    """A PIL JPEG round trip at quality ~ U{jpeg_quality} (both ends included)."""
    quality = int(rng.integers(params.jpeg_quality[0], params.jpeg_quality[1] + 1))
    buffer = io.BytesIO()
    Image.fromarray(img).save(buffer, format="JPEG", quality=quality)
    buffer.seek(0)
    return np.asarray(Image.open(buffer).convert("RGB"))


def greyscale(img: np.ndarray) -> np.ndarray:
    """PIL's luminance ("L": 0.299 R + 0.587 G + 0.114 B) replicated to 3 channels."""
    return np.repeat(np.asarray(Image.fromarray(img).convert("L"))[..., None], 3, axis=-1)


def maybe_grey(rng: np.random.Generator, *images: np.ndarray, p: float = AUTHORS.grey_p) -> tuple[np.ndarray, ...]:
    """``images`` all made grey together with probability ``p`` (one draw), else unchanged: the authors' loaders
    grey each stage-1 sample on its own and a mapping pair's x and y together."""
    grey = rng.random() < p
    return tuple(greyscale(img) if grey else img for img in images)


_OPERATIONS = {"blur": blur, "noise": noise, "resize": resize, "jpeg": jpeg}


def degrade_with_ops(img: np.ndarray, rng: np.random.Generator,
                     params: Degradation = AUTHORS) -> tuple[np.ndarray, list[str]]:
    """:func:`degrade` and the names of the operations it applied, in order (for tests and logs)."""
    applied = []
    for k in rng.permutation(len(OPERATIONS)):
        if rng.random() < params.p:
            applied.append(OPERATIONS[k])
            img = _OPERATIONS[OPERATIONS[k]](img, rng, params)
    if rng.random() < params.grey_p:
        applied.append("greyscale")
        img = greyscale(img)
    return img, applied


def degrade(img: np.ndarray, rng: np.random.Generator, params: Degradation = AUTHORS) -> np.ndarray:
    """X from Y: blur, noise, resize and JPEG in a random order, each with probability ``p``, then greyscale with
    probability ``grey_p`` (module docstring). No scratches: those are pasted by the caller."""
    return degrade_with_ops(img, rng, params)[0]


# ---------------------------------------------------------------------------------------------- scratches

def scratch_mask(shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """A procedural scratch mask, float32 (H, W) in {0, 1} (ours: the authors' scratch textures were never
    released). Scaled to the image so the share is about the same at any size (a few %, about 2% on average):

    * 2 to 6 long thin curves per 256 px of side: quadratic Bezier curves (``skimage.draw.bezier_curve``) from a
      random point in a random direction, 0.3 to 1 of the diagonal long, bent by a control point off the chord,
      each dilated to a width of 1, 2 or 3 px;
    * 0 to 3 small blotches per 256 x 256 px: filled ellipses of radii 1.5 to 6 px (at 256), randomly rotated.
    """
    from scipy.ndimage import binary_dilation
    from skimage.draw import bezier_curve, ellipse
    h, w = int(shape[0]), int(shape[1])
    scale = np.sqrt(h * w) / 256.0
    mask = np.zeros((h, w), bool)
    diagonal = np.hypot(h, w)
    for _ in range(max(1, round(rng.integers(2, 7) * scale))):
        r0, c0 = rng.uniform(0, h), rng.uniform(0, w)
        angle, length = rng.uniform(0, np.pi), rng.uniform(0.3, 1.0) * diagonal
        r2, c2 = r0 + length * np.sin(angle), c0 + length * np.cos(angle)
        bend = rng.normal(0, 0.15 * length)
        r1, c1 = (r0 + r2) / 2 + bend * np.cos(angle), (c0 + c2) / 2 - bend * np.sin(angle)
        rr, cc = bezier_curve(*(int(round(v)) for v in (r0, c0, r1, c1, r2, c2)), weight=1.0, shape=(h, w))
        curve = np.zeros((h, w), bool)
        curve[rr, cc] = True
        width = int(rng.integers(1, 4))
        mask |= binary_dilation(curve, np.ones((width, width), bool)) if width > 1 else curve
    for _ in range(round(rng.integers(0, 4) * scale ** 2)):
        radii = rng.uniform(1.5, 6.0, size=2) * max(scale, 0.25)
        rr, cc = ellipse(rng.uniform(0, h), rng.uniform(0, w), *radii, shape=(h, w), rotation=rng.uniform(0, np.pi))
        mask[rr, cc] = True
    return mask.astype(np.float32)


def paste_scratches(img: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """White scratches, the authors' rule: ``img (1 - m) + 255 m`` with ``mask`` float (H, W) in [0, 1]."""
    m = np.asarray(mask, np.float32)[..., None]
    return _uint8(img.astype(np.float32) * (1.0 - m) + 255.0 * m)


# ---------------------------------------------------------------------------------------------- the aged-print domain

PAPER = np.array([0.95, 0.90, 0.78], np.float32)  # yellowed photographic paper
SEPIA = np.array([1.00, 0.84, 0.62], np.float32)  # sepia toning, relative to luminance


def _smooth_field(shape: tuple[int, int], rng: np.random.Generator, cells: int = 4) -> np.ndarray:
    """A smooth random field in [0, 1]: uniform values on a cells x cells grid, cubic-interpolated to ``shape``."""
    from skimage.transform import resize as sk_resize
    field = sk_resize(rng.random((cells, cells)), shape, order=3, mode="reflect", anti_aliasing=False)
    return np.clip(field, 0.0, 1.0).astype(np.float32)


def aged_print(img: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """:func:`age_print` and its scratch mask (float32 (H, W) in {0, 1}: the scratches of :func:`scratch_mask`
    drawn on it; the soft stains are not in it)."""
    from scipy.ndimage import gaussian_filter
    h, w = img.shape[:2]
    x = img.astype(np.float32) / 255.0
    lum = x @ LUMA
    # sepia toning and colour fading: a blend towards a sepia tone of the luminance
    toning = rng.uniform(0.6, 1.0)
    x = (1.0 - toning) * x + toning * lum[..., None] * SEPIA
    # a faded print: blacks lifted and whites dimmed towards the paper's tone (lower contrast)
    black, white = rng.uniform(0.08, 0.2), rng.uniform(0.85, 1.0)
    x = PAPER * (black + (white - black) * x)
    # uneven fading towards the paper, and vignetting about a jittered centre
    fade = rng.uniform(0.1, 0.35) * _smooth_field((h, w), rng)[..., None]
    x = x * (1.0 - fade) + PAPER * fade
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    cy, cx = h * rng.uniform(0.4, 0.6), w * rng.uniform(0.4, 0.6)
    radius2 = ((yy - cy) / h) ** 2 + ((xx - cx) / w) ** 2
    x = x * (1.0 - rng.uniform(0.3, 0.8) * radius2)[..., None]
    # stains: soft Gaussian spots, dark brown or light
    for _ in range(int(rng.integers(1, 5))):
        sy, sx = rng.uniform(0, h), rng.uniform(0, w)
        size = rng.uniform(0.03, 0.12) * min(h, w)
        spot = (rng.uniform(0.15, 0.4) * np.exp(-((yy - sy) ** 2 + (xx - sx) ** 2) / (2 * size ** 2)))[..., None]
        x = x * (1.0 - spot * np.array([0.55, 0.7, 0.9], np.float32)) if rng.random() < 0.6 else \
            x * (1.0 - spot) + PAPER * spot
    # film grain: multiplicative, clumped, strongest in the mid-tones (silver grains), the same in every channel
    grain = gaussian_filter(rng.standard_normal((h, w)).astype(np.float32), rng.uniform(0.6, 1.2))
    grain /= grain.std() + 1e-8
    lum = np.clip(x @ LUMA, 0.0, 1.0)
    x = x * (1.0 + rng.uniform(0.04, 0.1) * 2.0 * np.sqrt(lum * (1.0 - lum)) * grain)[..., None]
    # scratches: light, with soft edges (not the pipeline's pure-white paste)
    mask = scratch_mask((h, w), rng)
    soft = np.clip(gaussian_filter(mask, 0.6) * 1.5, 0.0, 1.0)[..., None]
    x = x * (1.0 - soft) + soft * rng.uniform(0.85, 1.0) * PAPER
    return _uint8(x * 255.0), mask


def age_print(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The embedded "real old photo" domain R. These are NOT real old photos: a seeded process of ours, different
    from :func:`degrade` so the domain gap between R and X is real: sepia toning or colour fading (a blend towards
    a sepia tone of the luminance) on a faded, lower-contrast print of yellowed paper; uneven fading (a smooth
    random field towards the paper tone) and vignetting; soft dark or light stains; multiplicative,
    luminance-dependent film grain (where the pipeline's noise is additive); light soft-edged scratches from
    :func:`scratch_mask`. :func:`aged_print` returns the scratch mask too."""
    return aged_print(img, rng)[0]
