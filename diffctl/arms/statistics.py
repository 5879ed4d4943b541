"""The batch statistics a controller reads: their registry, where they come from, and how they are normalised.

Registry. Each statistic is a named column computed from a :class:`StatView` of one batch. Encoder-side
statistics (``KL_A``, ``KL_B``, ``var_A``, ``var_B``, ``code_gap``, ``rank``) need only the encoder outputs of
the current batch, which exist before rho is chosen. Decoder-side statistics (``H_A``, ``H_B``, ``H_gap``,
``CE_A``, ``CE_B``, ``CE_ratio``) need decoder outputs, which the seed reads from the very decode that rho is
about to set: that is circular, so they come from a ``stats_source``:

- ``previous`` (default): the previous step's loss terms, i.e. the very CE and entropies the controller
  weights, at the rho and on the sampled codes the loss saw. One step late and batch-level only; before the
  first step of a run they fall back to ``pre_decode``. Always detached (they belong to a finished step).
- ``pre_decode``: decode mu of both VAEs without cross-injection (rho = 0, no sampling) before the real
  decode: statistics of the current batch, per sample, as the seed intends, at the cost of one more forward
  pass of both decoders (with a graph when ``detach_stats`` is false).
- ``encoder``: encoder-side statistics only; a decoder-side name in ``stats`` is a config error.

``previous`` is the default because it is free: measured, a ``pre_decode`` step costs about a quarter more than
a fixed-arm step, far beyond the controller's own cost, and a statistic one step old is no loss for weights
that change slowly. Encoder-side statistics always come from the current batch, whatever the source.

Granularity. For a per-sample rho the statistics are per sample: (B, n). Batch-level ones (``rank`` and
anything from ``previous``) are broadcast over the batch. Otherwise the per-sample quantities are averaged
over the batch first, so ``CE_ratio`` is the ratio of the batch means, and the result is (1, n).

Normalisation. The statistics differ in scale by orders of magnitude (KL >= 8 nats, H_gap ~ 0.01). Each value
v becomes sign(v) * log1p(|v|), then is standardised by a running mean and variance of that quantity and
clipped to [-5, 5]. The moments start as one pseudo-observation of a standard normal (so the first batch is not
standardised to exactly zero), average cumulatively for the first ~100 updates, then exponentially with
momentum 0.01. They are buffers: deterministic, saved in the arm's state dict, updated only in training mode.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from ..losses import decoder_entropy, gaussian_kl, reconstruction_ce, triplet_ranking_loss
from ..model import Encoding

StatsSource = Literal["previous", "pre_decode", "encoder"]


@dataclass
class StatView:
    """The quantities the statistics are columns of, with ``rows`` rows (B per sample, or 1 for the batch).

    ``kl``, ``var``, ``ce``, ``ent``: (2, rows) or (2, 1) for (A, B); ``code_gap``: (rows,); ``rank``: ()
    (batch-level). A field no requested statistic reads is None.
    """

    rows: int
    kl: torch.Tensor | None
    var: torch.Tensor | None
    code_gap: torch.Tensor | None
    rank: torch.Tensor | None
    ce: torch.Tensor | None
    ent: torch.Tensor | None

    def batch_mean(self) -> "StatView":
        """The view with every per-sample field averaged over the batch (a field of one column is already its
        mean, and stays as it is: the mean of one value is that value)."""

        def mean(t: torch.Tensor | None) -> torch.Tensor | None:
            return t if t is None or t.shape[-1:] == (1,) else t.mean(-1, keepdim=True)

        return StatView(1, mean(self.kl), mean(self.var), mean(self.code_gap), self.rank, mean(self.ce), mean(self.ent))


Field = Literal["kl", "var", "code_gap", "rank", "ce", "ent"]
FIELDS: tuple[Field, ...] = ("kl", "var", "code_gap", "rank", "ce", "ent")
PAIRED = frozenset({"kl", "var", "ce", "ent"})  # fields with a row per VAE (A, B); the others have one
RATIO_FLOOR = 1e-6  # the denominator of a ratio statistic is clamped from below at this


@dataclass(frozen=True)
class Statistic:
    """One registered statistic: the view field it reads (``needs``) and how it reads it (``read``).

    ``read``: ``A`` or ``B`` (that VAE's row of a paired field), ``value`` (a field of one row), ``gap``
    (|A - B|) or ``ratio`` (A / max(B, RATIO_FLOOR)).
    """

    name: str
    needs: Field
    read: Literal["A", "B", "value", "gap", "ratio"]
    meaning: str

    @property
    def decoder_side(self) -> bool:
        return self.needs in ("ce", "ent")

    def column(self, view: StatView) -> torch.Tensor:
        """This statistic alone, from ``view``: (rows,), (1,) or () (the definition :class:`StatPlan` computes
        for several statistics at once)."""
        field = getattr(view, self.needs)
        if self.read == "value":
            return field
        if self.read in ("A", "B"):
            return field["AB".index(self.read)]
        if self.read == "gap":
            return (field[0] - field[1]).abs()
        return field[0] / field[1].clamp_min(RATIO_FLOOR)


REGISTRY: dict[str, Statistic] = {
    s.name: s
    for s in (
        Statistic("H_A", "ent", "A", "mean per-position decoder entropy of VAE-A"),
        Statistic("H_B", "ent", "B", "mean per-position decoder entropy of VAE-B"),
        Statistic("H_gap", "ent", "gap", "entropy alignment |H_A - H_B|"),
        Statistic("CE_A", "ce", "A", "reconstruction cross-entropy of VAE-A"),
        Statistic("CE_B", "ce", "B", "reconstruction cross-entropy of VAE-B"),
        Statistic("CE_ratio", "ce", "ratio", "CE_A / CE_B"),
        Statistic("KL_A", "kl", "A", "true Gaussian KL of VAE-A (no free-bits floor)"),
        Statistic("KL_B", "kl", "B", "true Gaussian KL of VAE-B (no free-bits floor)"),
        Statistic("var_A", "var", "A", "latent variance of mu_A over the batch"),
        Statistic("var_B", "var", "B", "latent variance of mu_B over the batch"),
        Statistic("code_gap", "code_gap", "value", "mean squared distance |mu_A - mu_B|^2 / latent"),
        Statistic("rank", "rank", "value", "3-adic ranking loss of mu, A + B, on fixed batch triples"),
    )
}

# The seed's named inputs (H_A, H_B, KL_A, KL_B, CE_A, CE_B, their ratio) and the entropy gap, eight in all;
# for the encoder-only source, every encoder-side statistic.
DEFAULT_STATS = ("H_A", "H_B", "H_gap", "KL_A", "KL_B", "CE_A", "CE_B", "CE_ratio")
ENCODER_STATS = tuple(name for name, s in REGISTRY.items() if not s.decoder_side)


def default_stats(source: str) -> tuple[str, ...]:
    """The statistics a controller reads when its config names none."""
    return ENCODER_STATS if source == "encoder" else DEFAULT_STATS


def check_stats(names: tuple[str, ...], source: str) -> str | None:
    """Why ``names`` cannot be read from ``source`` (a one-line message), or None when they can."""
    if not names:
        return "empty list (name at least one statistic)"
    unknown = [n for n in names if n not in REGISTRY]
    if unknown:
        return f"unknown statistic {unknown[0]!r} (known: {', '.join(REGISTRY)})"
    if len(set(names)) != len(names):
        return "a statistic is listed twice"
    if source == "encoder":
        decoder = [n for n in names if REGISTRY[n].decoder_side]
        if decoder:
            return f"{decoder[0]!r} needs the decoder; stats_source 'encoder' offers {', '.join(ENCODER_STATS)}"
    return None


def _fixed_triples(n: int) -> torch.Tensor:
    """Triples (i, i+1, i+2) and (i, i+2, i+1) of batch positions: no random draw, and the batch is shuffled."""
    a = torch.arange(n)
    p, q = a.roll(-1), a.roll(-2)
    return torch.cat((torch.stack((a, p, q), -1), torch.stack((a, q, p), -1)))


def encoder_view(encoding: Encoding, index: torch.Tensor, names: tuple[str, ...]) -> StatView:
    """The encoder-side quantities of the current batch that ``names`` read, per sample (the others None)."""
    mu, logvar = encoding.mu, encoding.logvar
    needs = {REGISTRY[name].needs for name in names}
    kl = gaussian_kl(mu, logvar).sum(-1) if "kl" in needs else None
    var = (mu - mu.mean(-2, keepdim=True)).pow(2).mean(-1) if "var" in needs else None  # batch mean: variance
    code_gap = (mu[0] - mu[1]).pow(2).mean(-1) if "code_gap" in needs else None
    rank = triplet_ranking_loss(mu, index, _fixed_triples(len(index))).sum() if "rank" in needs else None
    return StatView(len(index), kl, var, code_gap, rank, None, None)


def needs_decoder(names: tuple[str, ...]) -> bool:
    """Whether any of ``names`` is a decoder-side statistic."""
    return any(REGISTRY[name].decoder_side for name in names)


def decoded_quantities(logits: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample reconstruction CE and decoder entropy of stacked logits (2, B, 9, 3): two (2, B) tensors."""
    per_sample = logits.unsqueeze(-3)  # a batch of one per sample: the library functions then keep B
    return reconstruction_ce(per_sample, x.unsqueeze(-2)), decoder_entropy(per_sample)


class StatPlan:
    """The statistics ``names`` as a matrix, read from a :class:`StatView` in a fixed handful of tensor ops.

    The fields the statistics need are laid side by side as the columns of one (rows, K) base matrix (a paired
    field gives two, A then B; a batch-level field is broadcast over the rows); the statistics that read a row
    are one ``index_select`` of it, every gap one subtraction and every ratio one division, and a last
    ``index_select`` puts the columns in the order of ``names``. The values are those of
    :meth:`Statistic.column`, bit for bit: the same operations on the same numbers, a statistic at a time
    costing a controller step dozens of small ops.
    """

    def __init__(self, names: tuple[str, ...]) -> None:
        stats = [REGISTRY[name] for name in names]
        self.fields = tuple(f for f in FIELDS if any(s.needs == f for s in stats))
        start, width = {}, 0
        for f in self.fields:
            start[f], width = width, width + (2 if f in PAIRED else 1)
        groups: dict[str, list[tuple[int, int]]] = {"row": [], "gap": [], "ratio": []}
        for position, s in enumerate(stats):
            column = start[s.needs] + (s.read == "B")
            groups["row" if s.read in ("A", "B", "value") else s.read].append((position, column))
        # the base columns each group reads (for a gap or a ratio: its A column; B is the next one)
        self._reads = {g: torch.tensor([c for _, c in pairs], dtype=torch.long) for g, pairs in groups.items() if pairs}
        self._next = {g: columns + 1 for g, columns in self._reads.items()}
        placed = [position for g in self._reads for position, _ in groups[g]]
        order = sorted(range(len(placed)), key=placed.__getitem__)  # column j of the result: computed column order[j]
        self._order = None if order == sorted(order) else torch.tensor(order)

    def matrix(self, view: StatView, per_sample: bool) -> torch.Tensor:
        """(B, n) when ``per_sample`` else (1, n): the statistics of ``view`` (per sample, or of batch means)."""
        if not per_sample:
            view = view.batch_mean()
        rows, parts = view.rows, []
        for f in self.fields:
            t = getattr(view, f)
            if f not in PAIRED:
                t = t.reshape(1, -1)
            parts.append(t.t() if t.shape[-1] == rows else t.t().expand(rows, -1))
        base = torch.cat(parts, -1) if len(parts) > 1 else parts[0]
        reads, after, columns = self._reads, self._next, []
        if "row" in reads:
            columns.append(base.index_select(-1, reads["row"]))
        if "gap" in reads:
            columns.append((base.index_select(-1, reads["gap"]) - base.index_select(-1, after["gap"])).abs())
        if "ratio" in reads:
            denominator = base.index_select(-1, after["ratio"]).clamp_min(RATIO_FLOOR)
            columns.append(base.index_select(-1, reads["ratio"]) / denominator)
        matrix = torch.cat(columns, -1) if len(columns) > 1 else columns[0]
        return matrix if self._order is None else matrix.index_select(-1, self._order)


def stat_matrix(names: tuple[str, ...], view: StatView, per_sample: bool) -> torch.Tensor:
    """The statistics ``names`` as a matrix: (B, n) when ``per_sample`` else (1, n) (a one-off :class:`StatPlan`)."""
    return StatPlan(names).matrix(view, per_sample)


class RunningNormaliser(nn.Module):
    """sign(v) log1p|v|, standardised by running moments, clipped to [-5, 5] (see the module docstring)."""

    MOMENTUM = 0.01
    CLIP = 5.0

    def __init__(self, width: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(width))
        self.register_buffer("mean_sq", torch.ones(width))
        self.register_buffer("count", torch.zeros((), dtype=torch.long))

    def forward(self, stats: torch.Tensor) -> torch.Tensor:
        v = torch.sign(stats) * torch.log1p(stats.abs())
        mean, mean_sq = self.mean, self.mean_sq
        if self.training:
            with torch.no_grad():
                m = max(1.0 / (int(self.count) + 2), self.MOMENTUM)
                if len(v) == 1:  # the mean over one row is that row
                    mean.lerp_(v[0], m)
                    mean_sq.lerp_(v[0].pow(2), m)
                else:
                    mean.lerp_(v.mean(0), m)
                    mean_sq.lerp_(v.pow(2).mean(0), m)
                self.count.add_(1)
        std = (mean_sq - mean.pow(2)).clamp_min(1e-4).sqrt()
        return ((v - mean) / std).clamp(-self.CLIP, self.CLIP)
