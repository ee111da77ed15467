"""In-job aggregation: one report per step for a whole torch.distributed group.

At each step hand-over every rank of the group summarizes what it logged
(token entropies from its logits or its own entropies, attention head sums,
named scalars), then the ranks combine with two collectives on the group:

  all_gather of HEADER_SLOTS float64 per rank: the layout fingerprint and
      length of the reduce vector, the rank, its token count and entropy sum,
      grad norm and loss (per-rank attribution), and the min/max entropy per
      vocabulary and the max attention logit per layer;
  all_reduce (sum) of one float64 vector: per vocabulary the counts and sums
      and a 2048-bin histogram, per layer the per-head entropy sums and counts,
      per named scalar its sum and count.

Then only the group's rank 0 sends the step, as a Report whose summary
(ReportSummary) lists every rank of the group. A step whose layout differs
between ranks (different vocabularies, layers, heads or scalar names), or has
more vocabularies or layers than the header holds, is sent per rank instead,
by every rank, as without aggregation; all ranks see the same gathered
headers, so they all take the same branch.
"""

import math
import time
import zlib

import numpy as np
import torch
import torch.distributed

from entrowatch import _arrays
from entrowatch import _report
from entrowatch.v1 import entrowatch_pb2 as pb

HISTOGRAM_BINS = 2048  # EntropySummary.histogram: the protocol's fixed bin count
MAX_VOCABS = 4  # distinct vocabularies per step carried by the header
MAX_LAYERS = 16  # layers with a max attention logit per step carried by the header
_FIXED_SLOTS = 8
HEADER_SLOTS = _FIXED_SLOTS + 2 * MAX_VOCABS + MAX_LAYERS
# Counters per vocabulary in the reduce vector, before its histogram.
_V_COUNT, _V_SUM, _V_SUM_SQ, _V_HIGH, _V_GEN_COUNT, _V_GEN_SUM, _V_TOP1_COUNT, _V_TOP1_SUM, \
    _V_SURP_COUNT, _V_SURP_SUM = range(10)
_V_COUNTERS = 10


class _Entropies:
    """Token entropies of one vocabulary on one rank (float64 numpy arrays)."""

    def __init__(self):
        self.values = []  # float32-rounded entropies, as the daemon keeps them
        self.generated = []
        self.top1 = []
        self.surprisal = []

    def add(self, values, generated, top1=None, surprisal=None):
        self.values.append(values)
        self.generated.append(generated)
        if top1 is not None:
            self.top1.append(top1)
        if surprisal is not None:
            self.surprisal.append(surprisal)

    def counters(self, log_v, threshold):
        h = np.concatenate(self.values) if self.values else np.zeros(0)
        gen = np.concatenate(self.generated) if self.generated else np.zeros(0, bool)
        top1 = np.concatenate(self.top1) if self.top1 else np.zeros(0)
        surp = np.concatenate(self.surprisal) if self.surprisal else np.zeros(0)
        surp = surp[np.isfinite(surp)]
        normalized = np.minimum(1.0, h / log_v).astype(np.float32)
        out = np.zeros(_V_COUNTERS + HISTOGRAM_BINS)
        out[_V_COUNT] = h.size
        out[_V_SUM] = h.sum()
        out[_V_SUM_SQ] = np.square(h).sum()
        out[_V_HIGH] = np.count_nonzero(normalized >= np.float32(threshold))
        out[_V_GEN_COUNT] = np.count_nonzero(gen)
        out[_V_GEN_SUM] = h[gen].sum()
        out[_V_TOP1_COUNT] = top1.size
        out[_V_TOP1_SUM] = top1.sum()
        out[_V_SURP_COUNT] = surp.size
        out[_V_SURP_SUM] = surp.sum()
        bins = np.minimum(HISTOGRAM_BINS - 1, np.floor(h / log_v * HISTOGRAM_BINS)).astype(np.int64)
        out[_V_COUNTERS:] = np.bincount(np.maximum(bins, 0), minlength=HISTOGRAM_BINS)
        lo, hi = (float(h.min()), float(h.max())) if h.size else (math.inf, -math.inf)
        return out, lo, hi


def _logits_entropies(rows, valid_vocab, temperature, targets):
    """(entropy, top1 prob, surprisal or None) per row, as float64 numpy arrays,
    computed in float32 (relative error near 1e-6 against float64; half the
    memory traffic)."""
    if _arrays.is_torch(rows):
        x = rows.detach().to("cpu", torch.float32)
    else:
        x = torch.from_numpy(np.asarray(rows, dtype=np.float32))
    logp = torch.log_softmax(x[:, :valid_vocab] / temperature, dim=1)
    p = logp.exp()
    entropy = -(torch.where(p > 0, p * logp, torch.zeros_like(p))).sum(dim=1)
    top1 = p.max(dim=1).values
    surprisal = None
    if targets is not None:
        surprisal = -logp.gather(1, torch.from_numpy(targets).view(-1, 1)).view(-1)
        surprisal = surprisal.double().numpy()
    return entropy.double().numpy(), top1.double().numpy(), surprisal


def _attention_entropies(q, k, causal, scale):
    """(per-head sums of per-query entropies [heads], max logit) for one sequence."""
    q = (q.detach().to("cpu") if _arrays.is_torch(q) else torch.from_numpy(np.asarray(q)))
    k = (k.detach().to("cpu") if _arrays.is_torch(k) else torch.from_numpy(np.asarray(k)))
    q, k = q.to(torch.float64), k.to(torch.float64)
    heads, nq, d = q.shape
    kv_heads, nk, _ = k.shape
    k = k.repeat_interleave(heads // kv_heads, dim=0)
    scores = torch.matmul(q, k.transpose(1, 2)) * (scale if scale else 1.0 / math.sqrt(d))
    if causal:
        position = torch.arange(nk - nq, nk).view(-1, 1)
        scores = scores.masked_fill(torch.arange(nk).view(1, -1) > position, -math.inf)
    logp = torch.log_softmax(scores, dim=2)
    p = logp.exp()
    entropy = -(torch.where(p > 0, p * logp, torch.zeros_like(p))).sum(dim=2)
    return entropy.sum(dim=1).numpy(), float(scores.max())


class LocalStep:
    """What one rank logged for one step, reduced to mergeable numbers."""

    def __init__(self, report, drop_nonfinite, dropped, high_entropy_threshold):
        self.threshold = high_entropy_threshold
        self.vocabs = {}  # V -> _Entropies
        self.layers = {}  # layer -> [head sums, head counts] (float64 numpy)
        self.max_logits = {}  # layer -> max attention logit
        self._fold_logits(report, drop_nonfinite, dropped)
        self._fold_token_entropies(report, drop_nonfinite, dropped)
        self._fold_attention(report, drop_nonfinite, dropped)
        self.scalars = {name: _arrays.resolve_scalar(v) for name, v in report.named_scalars.items()}
        self.scalars = {n: v for n, v in self.scalars.items() if math.isfinite(v) or not drop_nonfinite}
        self.grad = None if report.grad_norm is None else _arrays.resolve_scalar(report.grad_norm)
        self.loss = None if report.loss is None else _arrays.resolve_scalar(report.loss)
        self.lr = None if report.learning_rate is None else _arrays.resolve_scalar(report.learning_rate)
        if drop_nonfinite:
            for name in ("grad", "loss", "lr"):
                if getattr(self, name) is not None and not math.isfinite(getattr(self, name)):
                    setattr(self, name, None)
                    dropped.scalars_nonfinite += 1

    def _vocab(self, v):
        return self.vocabs.setdefault(int(v), _Entropies())

    def _fold_logits(self, report, drop_nonfinite, dropped):
        for item in report.logits:
            keep, targets = _report.kept_rows(item, drop_nonfinite, dropped)
            entropies = self._vocab(item.valid_vocab)
            if not keep.any():
                continue
            rows = item.rows
            if not keep.all():
                rows = (rows[torch.from_numpy(np.flatnonzero(keep))]
                        if _arrays.is_torch(rows) else rows[keep])
            h, top1, surprisal = _logits_entropies(rows, item.valid_vocab, item.temperature,
                                                   None if targets is None else targets[keep])
            kinds = (np.zeros(h.size, bool) if item.kinds is None
                     else _arrays.to_host_ints(item.kinds)[keep] == pb.GENERATED)
            entropies.add(h.astype(np.float32).astype(np.float64), kinds, top1, surprisal)

    def _fold_token_entropies(self, report, drop_nonfinite, dropped):
        for values, vocab_size, kinds in report.token_entropies:
            host = _arrays.to_host(values)[0].astype(np.float32).reshape(-1)
            keep = np.ones(host.shape, dtype=bool)
            if drop_nonfinite:
                max_h = np.log(vocab_size) + 1e-5 * max(1.0, np.log(vocab_size))
                keep = np.isfinite(host) & (host >= 0) & (host <= max_h)
                dropped.values_invalid += int((~keep).sum())
            generated = (np.zeros(host.size, bool) if kinds is None
                         else _arrays.to_host_ints(kinds) == pb.GENERATED)
            self._vocab(vocab_size).add(host[keep].astype(np.float64), generated[keep])

    def _layer(self, layer, heads):
        sums, counts = self.layers.get(layer, (np.zeros(0), np.zeros(0)))
        if sums.size < heads:
            sums = np.concatenate([sums, np.zeros(heads - sums.size)])
            counts = np.concatenate([counts, np.zeros(heads - counts.size)])
        self.layers[layer] = (sums, counts)
        return sums, counts

    def _fold_attention(self, report, drop_nonfinite, dropped):
        for item in report.attention:
            q, q_dtype = _arrays.to_host(item.q)
            k, k_dtype = _arrays.to_host(item.k)
            q32, k32 = _arrays.as_float32(q, q_dtype), _arrays.as_float32(k, k_dtype)
            if drop_nonfinite and not (np.isfinite(q32).all() and np.isfinite(k32).all()):
                dropped.blocks_nonfinite += 1
                continue
            head_sums, max_logit = _attention_entropies(q32, k32, item.causal, item.scale)
            sums, counts = self._layer(item.layer, head_sums.size)
            sums[:head_sums.size] += head_sums
            counts[:head_sums.size] += q32.shape[1]
            self.max_logits[item.layer] = max(self.max_logits.get(item.layer, -math.inf),
                                              max_logit)
        for layer, values in report.attention_entropies:
            host = _arrays.to_host(values)[0].astype(np.float32).reshape(-1).astype(np.float64)
            if drop_nonfinite and not (np.isfinite(host) & (host >= 0)).all():
                dropped.blocks_nonfinite += 1
                continue
            sums, counts = self._layer(layer, host.size)
            sums[:host.size] += host
            counts[:host.size] += 1

    # ---- layout, header and reduce vector -----------------------------------

    def layout(self):
        """Everything that must agree between ranks for their vectors to add up."""
        return (tuple(sorted(self.vocabs)),
                tuple((layer, self.layers[layer][0].size) for layer in sorted(self.layers)),
                tuple(sorted(self.max_logits)), tuple(sorted(self.scalars)))

    def fits(self):
        return (len(self.vocabs) <= MAX_VOCABS and len(self.max_logits) <= MAX_LAYERS
                and all(v >= 2 for v in self.vocabs))

    def reduce_vector(self):
        parts = []
        self._minmax = []
        for v in sorted(self.vocabs):
            counters, lo, hi = self.vocabs[v].counters(math.log(v), self.threshold)
            parts.append(counters)
            self._minmax += [lo, hi]
        for layer in sorted(self.layers):
            parts.extend(self.layers[layer])
        for name in sorted(self.scalars):
            parts.append(np.array([self.scalars[name], 1.0]))
        return np.concatenate(parts) if parts else np.zeros(0)

    def header(self, rank, reduce_len):
        token_count = sum(sum(a.size for a in e.values) for e in self.vocabs.values())
        entropy_sum = sum(sum(a.sum() for a in e.values) for e in self.vocabs.values())
        fingerprint = zlib.crc32(repr(self.layout()).encode()) if self.fits() else -1.0
        out = np.full(HEADER_SLOTS, np.nan)
        out[:_FIXED_SLOTS] = [fingerprint, reduce_len, rank, token_count, entropy_sum,
                              math.nan if self.grad is None else self.grad,
                              math.nan if self.loss is None else self.loss,
                              (self.grad is not None) + 2 * (self.loss is not None)]
        if self.fits():
            minmax = self._minmax
            out[_FIXED_SLOTS:_FIXED_SLOTS + len(minmax)] = minmax
            logits = [self.max_logits[layer] for layer in sorted(self.max_logits)]
            start = _FIXED_SLOTS + 2 * MAX_VOCABS
            out[start:start + len(logits)] = logits
        return out


def summary_proto(local, headers, total):
    """The ReportSummary of the group from the gathered headers [ranks, HEADER_SLOTS]
    and the summed reduce vector (both float64 numpy)."""
    out = pb.ReportSummary()
    offset = 0
    for i, v in enumerate(sorted(local.vocabs)):
        c = total[offset:offset + _V_COUNTERS]
        hist = total[offset + _V_COUNTERS:offset + _V_COUNTERS + HISTOGRAM_BINS]
        offset += _V_COUNTERS + HISTOGRAM_BINS
        lo = np.nanmin(headers[:, _FIXED_SLOTS + 2 * i])
        hi = np.nanmax(headers[:, _FIXED_SLOTS + 2 * i + 1])
        count = int(round(c[_V_COUNT]))
        e = out.entropy.add(vocab_size=v, count=count, sum=c[_V_SUM], sum_squares=c[_V_SUM_SQ],
                            high_entropy_threshold=local.threshold,
                            high_entropy_count=int(round(c[_V_HIGH])),
                            generated_count=int(round(c[_V_GEN_COUNT])),
                            generated_sum=c[_V_GEN_SUM],
                            top1_count=int(round(c[_V_TOP1_COUNT])), top1_prob_sum=c[_V_TOP1_SUM],
                            surprisal_count=int(round(c[_V_SURP_COUNT])),
                            surprisal_sum=c[_V_SURP_SUM])
        if count:
            e.min, e.max = float(lo), float(hi)
            e.histogram.extend(int(round(n)) for n in hist)
    max_logit_layers = sorted(local.max_logits)
    for layer in sorted(local.layers):
        heads = local.layers[layer][0].size
        a = out.attention.add(layer=layer, head_entropy_sum=total[offset:offset + heads].tolist(),
                              head_count=[int(round(n)) for n in
                                          total[offset + heads:offset + 2 * heads]])
        offset += 2 * heads
        if layer in max_logit_layers:
            column = _FIXED_SLOTS + 2 * MAX_VOCABS + max_logit_layers.index(layer)
            a.max_logit = float(np.nanmax(headers[:, column]))
    for row in headers[np.argsort(headers[:, 2])]:
        tokens, entropy_sum, grad, loss, flags = row[3], row[4], row[5], row[6], int(row[7])
        r = out.ranks.add(rank=int(row[2]), token_count=int(round(tokens)),
                          entropy_mean=entropy_sum / tokens if tokens else 0.0)
        if flags & 1:
            r.has_grad_norm, r.grad_norm = True, grad
        if flags & 2:
            r.has_loss, r.loss = True, loss
    scalars = {}
    for name in sorted(local.scalars):
        value, count = total[offset], total[offset + 1]
        offset += 2
        scalars[name] = value / count
    return out, scalars


class Aggregator:
    """Combines each step over a torch.distributed process group (see module doc)."""

    def __init__(self, group, rank, high_entropy_threshold):
        self._dist = torch.distributed
        if not self._dist.is_available() or not self._dist.is_initialized():
            raise ValueError("aggregate= needs an initialized torch.distributed process group")
        self._group = group
        self._rank = rank
        self._threshold = high_entropy_threshold
        self.group_rank = self._dist.get_rank(group)
        self.group_size = self._dist.get_world_size(group)
        if self.group_rank < 0:
            raise ValueError("aggregate=: this process is not a member of the group")
        # Seconds the latest combine() spent summarizing locally and in the
        # two collectives (bench and tests read them).
        self.last_local_s = self.last_collectives_s = 0.0
        backend = self._dist.get_backend(group)
        self._device = (torch.device("cuda", torch.cuda.current_device())
                        if backend == "nccl" else torch.device("cpu"))

    def combine(self, report, drop_nonfinite, dropped):
        """Summarizes the step and runs its collectives. Returns (summary
        ReportSummary, scalars, learning rate) on the group's rank 0, None on the
        other ranks, or "per-rank" when the step must go out per rank (layouts
        differ)."""
        return self.exchange(*self.summarize(report, drop_nonfinite, dropped))

    def summarize(self, report, drop_nonfinite, dropped):
        """This rank's part: (LocalStep, reduce vector, header)."""
        start = time.perf_counter()
        for event in report.device_events:
            event.synchronize()
        local = LocalStep(report, drop_nonfinite, dropped, self._threshold)
        vector = local.reduce_vector() if local.fits() else np.zeros(0)
        header = local.header(self._rank, vector.size)
        self.last_local_s = time.perf_counter() - start
        return local, vector, header

    def exchange(self, local, vector, header):
        """The step's two collectives (see combine)."""
        start = time.perf_counter()
        header = torch.from_numpy(header).to(self._device)
        gathered = [torch.empty_like(header) for _ in range(self.group_size)]
        self._dist.all_gather(gathered, header, group=self._group)
        headers = torch.stack(gathered).cpu().numpy()
        if not (local.fits() and (headers[:, 0] == headers[0, 0]).all()
                and (headers[:, 1] == headers[0, 1]).all()):
            return "per-rank"
        total = torch.from_numpy(vector).to(self._device)
        self._dist.all_reduce(total, group=self._group)
        total = total.cpu().numpy()
        self.last_collectives_s = time.perf_counter() - start
        if self.group_rank != 0:
            return None
        summary, scalars = summary_proto(local, headers, total)
        return summary, scalars, local.lr
