"""Lossless coding of the quantised latents with statistics the decoder already has (Dumas et al., ICASSP 2018,
Section 4; the authors' binariser and binary arithmetic coder).

The paper checks its rate estimate (the empirical entropy of each test image's own symbols) against the exact
rate of a lossless coder: within 0.04 bpp. The authors' coder takes its probabilities from the extra image set,
the one that gives the latent means mu_i (Section 3.1), so a decoder needs the model, mu_i and those statistics,
and nothing per image. Here the same idea, with a range coder (``constriction``) instead of their binariser:

* statistics (:class:`SymbolCounts`): per feature map i, the histogram of the quantised symbols of the extra
  images' latents, at the step the test images are quantised with (one histogram per beta, since the symbols
  change with beta), on [a_i, b_i], the smallest and largest symbol the extra set produced in that map;
* model of map i (:class:`MapModel`): the K_i = b_i - a_i + 1 symbols of [a_i, b_i] and two escapes ("below a_i",
  "above b_i"), with probabilities (count + 1) / (N_i + K_i + 2): one pseudo-count per symbol and per escape
  (Laplace's add-one rule), N_i the number of extra coefficients of the map;
* a symbol outside [a_i, b_i] is coded as its escape followed by its distance d >= 0 beyond the range
  (a_i - 1 - q or q - b_i - 1) in order-0 Exp-Golomb, 2 floor(log2(d + 1)) + 1 bits, in the same stream.

Why this rule: add-one gives every symbol of the range the extra set spans a finite cost even when the set never
produced it, and the escape covers the values no range fixed in advance can (a test image with stronger
contrast than the extra images), so any image decodes, at a cost that grows like log2 of the overshoot. With the
paper's extra set (1000 crops of 384 x 384: N_i = 576,000) the pseudo-counts lengthen the code of a seen symbol
by at most log2(1 + (K_i + 2) / N_i), about 1e-4 bits; an escape costs about log2(N_i) = 19 bits plus its
Exp-Golomb bits. Deviation from the authors: a multi-symbol range coder instead of their binarisation, and this
rule in place of theirs for what the extra set never saw.

The stream starts with the latent height and width (16 bits each), then the maps in order, each map's symbols
followed by its escapes' Exp-Golomb codes: the decoder rebuilds the (m, h, w) indices from the stream, the number
of maps m and the models alone. Its size is the whole stream in 32-bit words.
"""
from __future__ import annotations

import dataclasses

import constriction
import numpy as np

from .metrics import flat_indices

_SIZE_BITS = 16  # header: latent height and width
_MAX_PREFIX = 23  # Exp-Golomb suffixes are coded as one uniform symbol: constriction's alphabets stay < 2^24
_BIT = constriction.stream.model.Uniform(2)


class SymbolCounts:
    """Per-map histograms of quantised symbols, accumulated image by image (the extra set at one beta)."""

    def __init__(self, m: int):
        self.m = m
        self.low = 0  # the symbol of column 0 (shared by the maps)
        self.counts = np.zeros((m, 0), dtype=np.int64)

    def add(self, indices) -> None:
        """Count the symbols of one image's indices (m, h, w)."""
        flat = flat_indices(indices)
        if flat.shape[0] != self.m:
            raise ValueError(f"indices have {flat.shape[0]} maps, the counts {self.m}")
        low, high = int(flat.min()), int(flat.max())
        if self.counts.shape[1] == 0:
            self.low, self.counts = low, np.zeros((self.m, high - low + 1), dtype=np.int64)
        grow_left = max(0, self.low - low)
        grow_right = max(0, high - (self.low + self.counts.shape[1] - 1))
        if grow_left or grow_right:
            self.counts = np.pad(self.counts, ((0, 0), (grow_left, grow_right)))
            self.low -= grow_left
        width = self.counts.shape[1]
        cells = (flat - self.low + np.arange(self.m)[:, None] * width).ravel()
        self.counts += np.bincount(cells, minlength=self.m * width).reshape(self.m, width)

    def models(self) -> list[MapModel]:
        """The coder's model of each map (see the module docstring)."""
        if self.counts.shape[1] == 0:
            raise ValueError("no symbols counted: the coder's statistics need at least one extra image")
        out = []
        for row in self.counts:
            seen = np.flatnonzero(row)
            first, last = int(seen[0]), int(seen[-1])
            out.append(MapModel.from_counts(self.low + first, row[first:last + 1]))
        return out


@dataclasses.dataclass(frozen=True)
class MapModel:
    """Probabilities of one map's symbols low .. low + K - 1, then of the escapes below and above."""
    low: int
    probabilities: np.ndarray  # (K + 2,)
    categorical: object  # constriction.stream.model.Categorical of ``probabilities``

    @classmethod
    def from_counts(cls, low: int, counts: np.ndarray) -> MapModel:
        """Add-one estimate from the counts of low .. low + len(counts) - 1 (one pseudo-count per escape)."""
        weights = np.concatenate([counts, [0, 0]]).astype(np.float64) + 1.0
        p = weights / weights.sum()
        return cls(int(low), p, constriction.stream.model.Categorical(p, perfect=False))

    @property
    def high(self) -> int:
        return self.low + len(self.probabilities) - 3

    def symbols(self, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """values -> (coder symbols, escape distances d >= 0 of the out-of-range values, in order)."""
        k = len(self.probabilities) - 2
        below, above = values < self.low, values > self.high
        symbols = np.where(below, k, np.where(above, k + 1, values - self.low))
        distances = np.where(below, self.low - 1 - values, values - self.high - 1)[below | above]
        return symbols.astype(np.int32), distances


def _encode_exp_golomb(encoder, d: int) -> None:
    n = int(d + 1).bit_length() - 1
    if n > _MAX_PREFIX:
        raise ValueError(f"a latent symbol lies {d} beyond the extra set's range: too far to code")
    if n:
        encoder.encode(np.zeros(n, dtype=np.int32), _BIT)  # the prefix: n zeros, then a one
    encoder.encode(1, _BIT)
    if n:  # the suffix: the n low bits of d + 1
        encoder.encode((d + 1) - (1 << n), constriction.stream.model.Uniform(1 << n))


def _decode_exp_golomb(decoder) -> int:
    n = 0
    while decoder.decode(_BIT) == 0:
        n += 1
        if n > _MAX_PREFIX:
            raise ValueError("corrupt stream: Exp-Golomb prefix too long")
    return (1 << n) - 1 + (int(decoder.decode(constriction.stream.model.Uniform(1 << n))) if n else 0)


def encode(indices, models: list[MapModel]) -> np.ndarray:
    """The compressed stream (uint32 words) of indices (m, h, w) under fixed per-map ``models``."""
    shape = np.shape(indices)
    flat = flat_indices(indices)
    if len(models) != flat.shape[0]:
        raise ValueError(f"indices have {flat.shape[0]} maps, the models {len(models)}")
    if max(shape[1:]) >= 1 << _SIZE_BITS:
        raise ValueError(f"latent size {shape[1:]} does not fit the {_SIZE_BITS}-bit header")
    encoder = constriction.stream.queue.RangeEncoder()
    size_model = constriction.stream.model.Uniform(1 << _SIZE_BITS)
    encoder.encode(np.asarray(shape[1:], dtype=np.int32), size_model)
    for values, model in zip(flat, models):
        symbols, distances = model.symbols(values)
        encoder.encode(symbols, model.categorical)
        for d in distances:
            _encode_exp_golomb(encoder, int(d))
    return encoder.get_compressed()


def decode(compressed: np.ndarray, models: list[MapModel]) -> np.ndarray:
    """Indices (m, h, w) from a stream of :func:`encode` and the same models (m = ``len(models)``)."""
    decoder = constriction.stream.queue.RangeDecoder(compressed)
    h, w = decoder.decode(constriction.stream.model.Uniform(1 << _SIZE_BITS), 2)
    out = np.empty((len(models), int(h) * int(w)), dtype=np.int64)
    for i, model in enumerate(models):
        symbols = decoder.decode(model.categorical, out.shape[1]).astype(np.int64)
        k = len(model.probabilities) - 2
        values = symbols + model.low
        for j in np.flatnonzero(symbols >= k):
            d = _decode_exp_golomb(decoder)
            values[j] = model.low - 1 - d if symbols[j] == k else model.high + 1 + d
        out[i] = values
    return out.reshape(len(models), int(h), int(w))


def code(indices, models: list[MapModel]) -> tuple[int, np.ndarray]:
    """Encode, then decode back: (size of the stream in bits, decoded indices (m, h, w))."""
    compressed = encode(indices, models)
    return 32 * int(compressed.size), decode(compressed, models)
