"""One step's worth of log_* calls, and its encoding as a wire Report."""

import numpy as np

from entrowatch import _arrays
from entrowatch import _wire
from entrowatch.v1 import entrowatch_pb2 as pb


class LogitsItem:
    __slots__ = ("rows", "valid_vocab", "temperature", "targets", "kinds")

    def __init__(self, rows, valid_vocab, temperature, targets, kinds):
        self.rows = rows
        self.valid_vocab = valid_vocab
        self.temperature = temperature
        self.targets = targets
        self.kinds = kinds


class AttentionItem:
    __slots__ = ("layer", "q", "k", "causal", "scale", "kinds")

    def __init__(self, layer, q, k, causal, scale, kinds):
        self.layer = layer
        self.q = q
        self.k = k
        self.causal = causal
        self.scale = scale
        self.kinds = kinds


class StepReport:
    """Everything one rank logged for one step. Filled by the caller's thread
    until handed over, then owned by the sender thread."""

    def __init__(self, step, time_ns):
        self.step = step
        self.time_ns = time_ns
        self.seq = 0
        self.nbytes = 0
        self.device_events = []
        self.logits = []
        self.attention = []
        self.token_entropies = []  # (values, vocab_size, kinds)
        self.attention_entropies = []  # (layer, values)
        self.grad_norm = None
        self.layer_names = None
        self.layer_norms = None
        self.loss = None
        self.learning_rate = None
        self.named_scalars = {}  # name -> number or one-element tensor
        self.summary = None  # pb.ReportSummary of a group's aggregate (see _aggregate)

    def add(self, item_bytes, device_event):
        self.nbytes += item_bytes
        if device_event is not None:
            self.device_events.append(device_event)


class Dropped:
    """Counts of what the encoder left out (written by the sender thread only)."""

    def __init__(self):
        self.rows_nonfinite = 0
        self.rows_ignored_target = 0
        self.values_invalid = 0
        self.blocks_nonfinite = 0
        self.scalars_nonfinite = 0


def _finite(value):
    return value is not None and np.isfinite(value)


def _kinds_list(kinds, keep=None):
    if kinds is None:
        return []
    host = _arrays.to_host_ints(kinds)
    if keep is not None:
        host = host[keep]
    return host.tolist()


def kept_rows(item, drop_nonfinite, dropped):
    """(bool mask of the rows of a LogitsItem that are sent, host targets or None),
    counting the others in dropped."""
    keep = np.ones(int(item.rows.shape[0]), dtype=bool)
    if drop_nonfinite:
        bad = _arrays.bad_rows(item.rows, item.valid_vocab)
        dropped.rows_nonfinite += int(bad.sum())
        keep &= ~bad
    targets = None
    if item.targets is not None:
        targets = _arrays.to_host_ints(item.targets)
        # Negative targets are PyTorch's ignore_index: padding, not tokens.
        ignored = (targets < 0) | (targets >= item.valid_vocab)
        dropped.rows_ignored_target += int((ignored & keep).sum())
        keep &= ~ignored
    return keep, targets


def _encode_logits(item, drop_nonfinite, dropped):
    """The LogitsBlock of item as wire pieces, or None when no row is left."""
    keep, targets = kept_rows(item, drop_nonfinite, dropped)
    if not keep.any():
        return None
    host, dtype = _arrays.to_host(item.rows)
    if not keep.all():
        host = host[keep]
        if targets is not None:
            targets = targets[keep]
    meta = pb.LogitsBlock(valid_vocab=item.valid_vocab, temperature=item.temperature,
                          token_kinds=_kinds_list(item.kinds, None if keep.all() else keep))
    if targets is not None:
        meta.target_ids.extend(targets.tolist())
    return _wire.logits_block(meta, _wire.tensor(dtype, host))


def _encode_attention(item, drop_nonfinite, dropped):
    """The AttentionBlock of item as wire pieces, or None when it is dropped."""
    q, q_dtype = _arrays.to_host(item.q)
    k, k_dtype = _arrays.to_host(item.k)
    if drop_nonfinite and not (np.isfinite(_arrays.as_float32(q, q_dtype)).all()
                               and np.isfinite(_arrays.as_float32(k, k_dtype)).all()):
        dropped.blocks_nonfinite += 1
        return None
    meta = pb.AttentionBlock(layer=item.layer, causal=item.causal, scale=item.scale or 0.0,
                             query_kinds=_kinds_list(item.kinds))
    return _wire.attention_block(meta, _wire.tensor(q_dtype, q), _wire.tensor(k_dtype, k))


def _host_floats(x):
    host, dtype = _arrays.to_host(x)
    return _arrays.as_float32(host, dtype).reshape(-1)


def encode(report, run_id, rank, world_size, phase, drop_nonfinite, dropped):
    """The serialized wire Report of a StepReport (bytes). Waits for the step's
    CUDA copies to host memory first."""
    for event in report.device_events:
        event.synchronize()
    out = pb.Report(run_id=run_id, rank=rank, world_size=world_size, step=report.step,
                    seq=report.seq, phase=phase)
    out.time.FromNanoseconds(report.time_ns)
    if report.summary is not None:
        out.summary.CopyFrom(report.summary)
    logits = [b for b in (_encode_logits(i, drop_nonfinite, dropped) for i in report.logits)
              if b is not None]
    attention = [b for b in (_encode_attention(i, drop_nonfinite, dropped)
                             for i in report.attention) if b is not None]
    for values, vocab_size, kinds in report.token_entropies:
        host = _host_floats(values)
        keep = np.ones(host.shape, dtype=bool)
        if drop_nonfinite:
            # The daemon's bound, with its allowance for float32 rounding.
            max_h = np.log(vocab_size) + 1e-5 * max(1.0, np.log(vocab_size))
            keep = np.isfinite(host) & (host >= 0) & (host <= max_h)
            dropped.values_invalid += int((~keep).sum())
        if keep.any():
            out.token_entropies.append(
                pb.TokenEntropies(values=host[keep].tolist(), vocab_size=vocab_size,
                                  token_kinds=_kinds_list(kinds, None if keep.all() else keep)))
    for layer, values in report.attention_entropies:
        host = _host_floats(values)
        if drop_nonfinite and not (np.isfinite(host) & (host >= 0)).all():
            dropped.blocks_nonfinite += 1
            continue
        out.attention_entropies.append(pb.AttentionEntropies(layer=layer, head_entropy=host.tolist()))
    if report.grad_norm is not None:
        norm = _arrays.resolve_scalar(report.grad_norm)
        if _finite(norm) or not drop_nonfinite:
            out.grad.global_norm = norm
            if report.layer_norms is not None:
                norms = _host_floats(report.layer_norms).astype(np.float64)
                for name, value in zip(report.layer_names, norms.tolist()):
                    if _finite(value) or not drop_nonfinite:
                        out.grad.layer_norms[name] = value
        else:
            dropped.scalars_nonfinite += 1
    for field, value in (("loss", report.loss), ("learning_rate", report.learning_rate)):
        if value is None:
            continue
        value = _arrays.resolve_scalar(value)
        if _finite(value) or not drop_nonfinite:
            setattr(out.scalars, field, value)
        else:
            dropped.scalars_nonfinite += 1
    for name, value in report.named_scalars.items():
        value = _arrays.resolve_scalar(value)
        if _finite(value) or not drop_nonfinite:
            out.scalars.values[name] = value
        else:
            dropped.scalars_nonfinite += 1
    return _wire.report(out, logits, attention)
