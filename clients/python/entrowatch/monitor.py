"""Monitor: the per-rank handle a training loop logs through."""

import atexit
import dataclasses
import os
import re
import threading
import time
import weakref

import grpc
from collections.abc import Mapping
from typing import Callable, Optional, Tuple

from entrowatch import _arrays
from entrowatch import _report
from entrowatch import _sender
from entrowatch.v1 import entrowatch_pb2 as pb

DEFAULT_ADDRESS = "127.0.0.1:50551"

PROMPT = pb.PROMPT
GENERATED = pb.GENERATED

_RUN_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")
_SCALAR_NAME = re.compile(r"[A-Za-z0-9_./:-]{1,128}")  # fullmatch

# Trainer metric names log_metrics understands: field ("loss", "lr",
# "grad_norm") or canonical named scalar. verl: actor/*, critic/*,
# response_length/*; TRL: the GRPO/PPO trainer logs.
METRIC_NAMES = {
    "loss": "loss", "train/loss": "loss", "train_loss": "loss",
    "learning_rate": "lr", "lr": "lr", "train/learning_rate": "lr", "actor/lr": "lr",
    "grad_norm": "grad_norm", "train/grad_norm": "grad_norm", "actor/grad_norm": "grad_norm",
    # Mean reward of the batch.
    "reward": "reward", "critic/rewards/mean": "reward", "rewards/mean": "reward",
    # KL to the reference policy (verl: kl_loss term or in-reward KL; TRL: kl,
    # objective/kl). verl's actor/ppo_kl is the KL to the rollout policy of the
    # PPO step, not to the reference, and stays a named scalar of its own.
    "kl": "kl", "actor/kl_loss": "kl", "critic/kl": "kl", "objective/kl": "kl",
    # Mean policy entropy of the generated tokens.
    "entropy": "entropy", "actor/entropy": "entropy", "objective/entropy": "entropy",
    "clip_fraction": "clip_fraction", "actor/pg_clipfrac": "clip_fraction",
    "clip_ratio": "clip_fraction", "policy/clipfrac_avg": "clip_fraction",
    "response_length": "response_length", "response_length/mean": "response_length",
    "completion_length": "response_length", "completions/mean_length": "response_length",
}
_PHASES = {"train": pb.TRAIN, "eval": pb.EVAL, "rollout": pb.ROLLOUT}


@dataclasses.dataclass(frozen=True)
class Anomaly:
    """An active anomaly pattern, as the daemon reported it."""
    pattern: str  # e.g. "ENTROPY_COLLAPSE"
    severity: str  # "INFO", "WARNING" or "CRITICAL"
    since_step: int
    subject: str  # e.g. "token", "layer 3"
    reason: str
    recommended_action: str


@dataclasses.dataclass(frozen=True)
class Verdict:
    """The run's health as of the latest acknowledgement."""
    state: str  # WARMUP NORMAL COMFORT_ZONE PANIC_ZONE STAGNATION PATHOLOGICAL_CONFIDENCE
    step: int  # the finalized step the verdict is about
    since_step: int
    reason: str
    recommended_action: str
    anomalies: Tuple[Anomaly, ...]
    summary: Optional[pb.StepSummary]  # statistics of that step, pooled over ranks


def _verdict_from_ack(ack):
    anomalies = tuple(
        Anomaly(pattern=pb.Pattern.Name(a.pattern), severity=pb.Severity.Name(a.severity),
                since_step=a.since_step, subject=a.subject, reason=a.reason,
                recommended_action=a.recommended_action) for a in ack.anomalies)
    v = ack.verdict
    return Verdict(state=pb.HealthState.Name(v.state), step=v.step, since_step=v.since_step,
                   reason=v.reason,
                   recommended_action=v.recommended_action or ack.recommended_action,
                   anomalies=anomalies,
                   summary=ack.latest_step if ack.HasField("latest_step") else None)


def _env_int(*names):
    for name in names:
        value = os.environ.get(name)
        if value not in (None, ""):
            return int(value)
    return None


def _detect_rank_world():
    torch = _arrays.torch_module()
    if torch is not None:
        dist = getattr(torch, "distributed", None)
        if dist is not None and dist.is_available() and dist.is_initialized():
            return dist.get_rank(), dist.get_world_size()
    rank = _env_int("RANK", "OMPI_COMM_WORLD_RANK", "PMI_RANK", "SLURM_PROCID")
    world = _env_int("WORLD_SIZE", "OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "SLURM_NTASKS")
    return rank or 0, world or 1


def _check_step(step):
    if isinstance(step, bool) or not isinstance(step, int) and not hasattr(step, "__index__"):
        raise TypeError(f"step must be an int, got {type(step).__name__}")
    step = int(step)
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step}")
    return step


def _named_value(value, name):
    """A number or one-element tensor/array for a scalar; a clear error otherwise."""
    if isinstance(value, (bool, str, bytes)) or value is None:
        raise TypeError(f"{name} must be a number or a one-element tensor, got "
                        f"{type(value).__name__} {value!r}")
    return _arrays.scalar_value(value, name)


def _check_layer(layer):
    if isinstance(layer, bool) or not isinstance(layer, int) or layer < 0:
        raise ValueError(f"layer must be an int >= 0, got {layer!r}")
    return layer


def _per_row(x, name, lead_shape, n_rows):
    """Validates targets / token_kinds given per row of logits; returns [n_rows]."""
    if x is None:
        return None
    x = _arrays.as_array(x, name)
    _arrays.check_int(x, name)
    if tuple(x.shape) != tuple(lead_shape) and _arrays.numel(x) != n_rows:
        raise ValueError(f"{name} must have one entry per row of logits, shape {tuple(lead_shape)}; "
                         f"got shape {tuple(x.shape)}")
    return x.reshape(-1)


class Monitor:
    """Streams one rank's training signals to entrowatchd.

    Every log_* call of one step is collected into one Report for this
    (rank, step); the Report is handed to a background sender when a log_*
    call names a later step, or on flush() / close(). Handing over never
    blocks: when the bounded queue is full the report is dropped and counted
    (stats.dropped_queue_full) with a rate-limited warning. The daemon being
    down, slow or restarting never raises into the caller; unacknowledged
    reports are resent after reconnecting.

    Argument errors (shape, dtype, negative step) raise TypeError/ValueError at
    the call site. Values are never inspected on the caller's thread (that would
    synchronize the device); with nonfinite="drop" (default) the sender drops
    logits rows holding NaN or +inf (-inf is a masked logit and is fine),
    entropies that are non-finite or outside [0, log(vocab_size)], attention blocks with a non-finite value and
    non-finite grad norms / losses, counting them in dropped.*; with
    nonfinite="send" they go to the daemon, whose ingest.skip_nonfinite_rows
    decides (by default it rejects the report).

    log_* calls are thread-safe. Callbacks registered with on_state run on the
    client's ack thread and must not block.

    aggregate=group (a torch.distributed process group, e.g.
    torch.distributed.group.WORLD) combines each step over the group inside the
    job: every rank summarizes its own values, the ranks run one all_gather of
    a few numbers each (rank, token count, mean entropy, grad norm, loss,
    min/max entropy, max attention logits) and one all_reduce of one float64
    vector (per vocabulary 10 counters and a 2048-bin entropy histogram, per
    attention layer 2 x heads sums, per named scalar 2), and only the group's
    rank 0 sends the step, as one summary report. The collectives run on the
    thread that hands the step over (the first log call of the next step,
    flush() or close()), so every rank of the group must log the same steps
    and call flush()/close() alike. Entropies are then computed by the client
    (float32, from the host copies); p10/p50/p90 come from the histogram,
    within (ln V) / 2048 nats. high_entropy_threshold should equal the
    daemon's aggregation.high_entropy_threshold (else the daemon estimates the
    high-entropy count from the histogram).
    """

    def __init__(self, address: Optional[str] = None, run_id: Optional[str] = None,
                 rank: Optional[int] = None, world_size: Optional[int] = None, *,
                 phase: str = "train", rows: Optional[int] = 32,
                 max_queue_reports: int = 256, max_queue_bytes: int = 256 << 20,
                 max_inflight: int = 64, reconnect_max_s: float = 2.0,
                 nonfinite: str = "drop", close_timeout_s: float = 10.0,
                 token: Optional[str] = None, token_file: Optional[str] = None,
                 tls_ca: Optional[str] = None, tls_cert: Optional[str] = None,
                 tls_key: Optional[str] = None, aggregate=None,
                 high_entropy_threshold: float = 0.8):
        self.address = address or os.environ.get("ENTROWATCH_ADDRESS", DEFAULT_ADDRESS)
        run_id = run_id or os.environ.get("ENTROWATCH_RUN_ID")
        if not run_id:
            raise ValueError("run_id is required (or set ENTROWATCH_RUN_ID)")
        if not _RUN_ID.match(run_id):
            raise ValueError(f"run_id must be 1-128 characters of A-Z a-z 0-9 _ . : -, got {run_id!r}")
        if phase not in _PHASES:
            raise ValueError(f"phase must be one of {sorted(_PHASES)}, got {phase!r}")
        if nonfinite not in ("drop", "send"):
            raise ValueError(f"nonfinite must be 'drop' or 'send', got {nonfinite!r}")
        if rows is not None and rows < 1:
            raise ValueError(f"rows must be >= 1 or None, got {rows}")
        detected_rank, detected_world = _detect_rank_world()
        self.run_id = run_id
        self.rank = detected_rank if rank is None else int(rank)
        self.world_size = detected_world if world_size is None else int(world_size)
        if not 0 <= self.rank < self.world_size:
            raise ValueError(f"rank {self.rank} is outside world_size {self.world_size}")
        self.rows = rows
        self._phase = _PHASES[phase]
        self._drop_nonfinite = nonfinite == "drop"
        self._close_timeout_s = close_timeout_s
        self.dropped = _report.Dropped()
        self._aggregator = None
        if aggregate is not None:
            from entrowatch import _aggregate
            self._aggregator = _aggregate.Aggregator(aggregate, self.rank,
                                                     float(high_entropy_threshold))

        self._lock = threading.Lock()
        self._pending = None
        self._last_step = -1
        # Wall-clock microseconds: a restarted trainer keeps increasing its seqs,
        # so the daemon never mistakes its new reports for resends of old ones.
        self._next_seq = time.time_ns() // 1000
        self._closed = False
        self._warn = _sender.RateLimitedLog()

        self._verdict = None
        self._callbacks = []
        self._callbacks_lock = threading.Lock()

        credentials, metadata = _credentials(token, token_file, tls_ca, tls_cert, tls_key)
        self._sender = _sender.Sender(
            self.address, self._encode, self._on_ack, max_queue_reports=max_queue_reports,
            max_queue_bytes=max_queue_bytes, max_inflight=max_inflight,
            reconnect_max_s=reconnect_max_s, warn=self._warn.warning,
            credentials=credentials, metadata=metadata)
        self._atexit = _CloseAtExit(self)

    # ---- logging -------------------------------------------------------------

    def log_logits(self, step, logits, rows=..., valid_vocab=None, temperature=1.0,
                   targets=None, token_kinds=None):
        """Samples rows of logits [..., vocab] (on their device) for token entropy.

        rows: how many rows to sample uniformly without replacement; ... means the
        Monitor's default (rows= in the constructor), None all rows. valid_vocab:
        columns at or beyond it are padding. targets: the next-token ids, one per
        row (negative = ignore_index: the row is not sent), for surprisal.
        token_kinds: entrowatch.PROMPT / GENERATED per row.
        """
        step = _check_step(step)
        x = _arrays.as_array(logits, "logits")
        _arrays.check_float(x, "logits")
        if x.ndim < 2:
            raise ValueError(f"logits must be [..., vocab] with at least 2 dims, got shape "
                             f"{tuple(x.shape)}")
        vocab = int(x.shape[-1])
        lead = tuple(x.shape[:-1])
        n_rows = _arrays.numel(x) // vocab if vocab else 0
        if vocab == 0 or n_rows == 0:
            raise ValueError(f"logits is empty: shape {tuple(x.shape)}")
        if valid_vocab is None:
            valid_vocab = vocab
        if isinstance(valid_vocab, bool) or not 1 <= int(valid_vocab) <= vocab:
            raise ValueError(f"valid_vocab must be in [1, {vocab}], got {valid_vocab}")
        temperature = float(temperature)
        if not temperature > 0 or temperature == float("inf"):
            raise ValueError(f"temperature must be > 0 and finite, got {temperature}")
        targets = _per_row(targets, "targets", lead, n_rows)
        token_kinds = _per_row(token_kinds, "token_kinds", lead, n_rows)
        if rows is ...:
            rows = self.rows
        if rows is not None and (isinstance(rows, bool) or int(rows) < 1):
            raise ValueError(f"rows must be >= 1 or None, got {rows}")
        idx = _arrays.sample_indices(n_rows, rows)
        item = _report.LogitsItem(
            _arrays.take_rows(_arrays.flatten_leading(x, 1), idx), int(valid_vocab), temperature,
            None if targets is None else _arrays.take_rows(targets, idx),
            None if token_kinds is None else _arrays.take_rows(token_kinds, idx))
        self._add(step, lambda r: r.logits.append(item), _arrays.nbytes(item.rows), x,
                  targets, token_kinds)

    def log_token_entropies(self, step, entropies, vocab_size, token_kinds=None):
        """Token entropies (nats) computed by the caller, any shape (flattened).

        vocab_size bounds them (0 <= H <= log(vocab_size)) and normalizes them.
        """
        step = _check_step(step)
        x = _arrays.as_array(entropies, "entropies")
        _arrays.check_float(x, "entropies")
        if _arrays.numel(x) == 0:
            raise ValueError("entropies is empty")
        if isinstance(vocab_size, bool) or not isinstance(vocab_size, int) or vocab_size < 1:
            raise ValueError(f"vocab_size must be an int >= 1, got {vocab_size!r}")
        n = _arrays.numel(x)
        token_kinds = _per_row(token_kinds, "token_kinds", tuple(x.shape), n)
        values = _arrays.copy_of(x.reshape(-1))
        kinds = None if token_kinds is None else _arrays.copy_of(token_kinds)
        self._add(step, lambda r: r.token_entropies.append((values, vocab_size, kinds)),
                  _arrays.nbytes(x), x, token_kinds)

    def log_attention(self, step, layer, q, k, causal=True, scale=None, query_kinds=None,
                      queries=None, batch_index=0, _owned=False):
        """Attention queries and keys of one sequence for attention entropy.

        q: [heads, nq, d] or [batch, heads, nq, d]; k: [kv_heads, nk, d] or
        [batch, kv_heads, nk, d] (heads a multiple of kv_heads: GQA). With a
        batch dimension, sequence batch_index is taken. With nq < nk the
        queries are the last nq positions. queries=N keeps the last N queries.
        scale: None = 1/sqrt(d).
        """
        step = _check_step(step)
        layer = _check_layer(layer)
        q = _arrays.as_array(q, "q")
        k = _arrays.as_array(k, "k")
        _arrays.check_float(q, "q")
        _arrays.check_float(k, "k")
        if q.dtype != k.dtype:
            raise TypeError(f"q and k must have the same dtype, got {q.dtype} and {k.dtype}")
        if q.ndim != k.ndim or q.ndim not in (3, 4):
            raise ValueError(f"q and k must both be [heads, n, d] or [batch, heads, n, d]; got "
                             f"q {tuple(q.shape)}, k {tuple(k.shape)}")
        if q.ndim == 4:
            if q.shape[0] != k.shape[0] or not 0 <= batch_index < q.shape[0]:
                raise ValueError(f"batch_index {batch_index} invalid for q {tuple(q.shape)}, "
                                 f"k {tuple(k.shape)}")
            q, k = q[batch_index], k[batch_index]
        heads, nq, d = (int(s) for s in q.shape)
        kv_heads, nk, dk = (int(s) for s in k.shape)
        if d != dk or d == 0:
            raise ValueError(f"q and k head dims differ: q {tuple(q.shape)}, k {tuple(k.shape)}")
        if kv_heads == 0 or heads % kv_heads != 0:
            raise ValueError(f"q heads ({heads}) must be a multiple of k heads ({kv_heads})")
        if nq == 0 or nk == 0 or (causal and nq > nk):
            raise ValueError(f"need 1 <= nq and 1 <= nk (nq <= nk when causal), got nq={nq}, "
                             f"nk={nk}")
        if queries is not None:
            if int(queries) < 1:
                raise ValueError(f"queries must be >= 1, got {queries}")
            q = q[:, max(nq - int(queries), 0):, :]
            nq = int(q.shape[1])
        if query_kinds is not None:
            query_kinds = _arrays.as_array(query_kinds, "query_kinds")
            _arrays.check_int(query_kinds, "query_kinds")
            if _arrays.numel(query_kinds) < nq:
                raise ValueError(f"query_kinds needs one entry per query ({nq}), got "
                                 f"{_arrays.numel(query_kinds)}")
            query_kinds = _arrays.copy_of(query_kinds.reshape(-1)[-nq:])
        if scale is not None and not float(scale) > 0:
            raise ValueError(f"scale must be > 0, got {scale}")
        # The caller may overwrite its tensors once this returns; tensors made
        # for this call alone (_owned) need no copy, only their way to the host.
        copy = _arrays.keep if _owned else _arrays.copy_of
        item = _report.AttentionItem(layer, copy(q), copy(k), bool(causal),
                                     None if scale is None else float(scale), query_kinds)
        self._add(step, lambda r: r.attention.append(item), _arrays.nbytes(q) + _arrays.nbytes(k),
                  q, k, query_kinds)

    def log_attention_entropies(self, step, layer, head_entropy):
        """Per-head attention entropies (nats) computed by the caller, one per head."""
        step = _check_step(step)
        layer = _check_layer(layer)
        x = _arrays.as_array(head_entropy, "head_entropy")
        _arrays.check_float(x, "head_entropy")
        if x.ndim != 1 or _arrays.numel(x) == 0:
            raise ValueError(f"head_entropy must be 1-D with one value per head, got shape "
                             f"{tuple(x.shape)}")
        values = _arrays.copy_of(x)
        self._add(step, lambda r: r.attention_entropies.append((layer, values)), _arrays.nbytes(x),
                  x)

    def log_grad_norm(self, step, model_or_value, per_layer=False):
        """Global L2 gradient norm: a number / scalar tensor, or a torch module
        whose .grad tensors are read (call after backward, before zero_grad).
        per_layer=True (module only) also sends one norm per layer: parameters
        grouped by name up to the first numeric component ("blocks.3"), else by
        their owning module. The norm stays on the device until the sender reads it.
        """
        step = _check_step(step)
        names = norms = None
        if hasattr(model_or_value, "named_parameters"):
            from entrowatch import torch as ew_torch
            value, names, norms = ew_torch.grad_norms(model_or_value, per_layer)
            if value is None:
                return
            source = value
            value, norms = _arrays.keep(value), _arrays.keep(norms)
        else:
            if per_layer:
                raise ValueError("per_layer=True needs a module, not a value")
            value = _arrays.scalar_value(model_or_value, "grad norm")
            source = model_or_value

        def fill(r):
            r.grad_norm = value
            r.layer_names, r.layer_norms = names, norms

        self._add(step, fill, 0, source)

    def log_scalars(self, step, loss=None, lr=None, **named):
        """Loss, learning rate and any named values of the step (numbers or
        one-element tensors): log_scalars(step, loss=l, lr=lr, reward=r, kl=k).
        grad_norm= goes to the gradient norm (as log_grad_norm); every other
        keyword is a named scalar (Scalars.values), e.g. reward, kl,
        clip_fraction, response_length, advantage_std."""
        fields = {}
        if loss is not None:
            fields["loss"] = loss
        if lr is not None:
            fields["lr"] = lr
        for name, value in named.items():
            if value is None:
                continue
            if name == "grad_norm":
                fields["grad_norm"] = value
            else:
                fields.setdefault("values", {})[name] = value
        self._log_fields(step, fields, "log_scalars")

    def log_metrics(self, step, metrics):
        """A trainer's metric dict for the step (verl, TRL, or any {name: number}).

        Known names go to their fields: loss ("loss", "train/loss"), learning
        rate ("learning_rate", "lr", "actor/lr"), gradient norm ("grad_norm",
        "actor/grad_norm"); RL names become the daemon's canonical named
        scalars (reward, kl, entropy, clip_fraction, response_length: see
        METRIC_NAMES); every other entry is kept as a named scalar under its own
        name. Names must match [A-Za-z0-9_./:-]{1,128}; values must be numbers
        or one-element tensors/arrays. Entries whose value is None are skipped.
        """
        if not isinstance(metrics, Mapping):
            raise TypeError(f"log_metrics: metrics must be a dict of name -> number, got "
                            f"{type(metrics).__name__}")
        fields = {}
        source = {}
        for key, value in metrics.items():
            if not isinstance(key, str):
                raise TypeError(f"log_metrics: metric names must be strings, got {key!r}")
            if value is None:
                continue
            target = METRIC_NAMES.get(key)
            if target is None:
                kind, name = "values", key
            elif target in ("loss", "lr", "grad_norm"):
                kind, name = target, None
            else:
                kind, name = "values", target
            label = kind if name is None else name
            if label in source:
                raise ValueError(f"log_metrics: {source[label]!r} and {key!r} both map to "
                                 f"{label!r}; pass only one of them")
            source[label] = key
            if name is None:
                fields[kind] = value
            else:
                fields.setdefault("values", {})[name] = value
        self._log_fields(step, fields, "log_metrics")

    def _log_fields(self, step, fields, caller):
        step = _check_step(step)
        loss = lr = grad = None
        if "loss" in fields:
            loss = _named_value(fields["loss"], f"{caller}: loss")
        if "lr" in fields:
            lr = _named_value(fields["lr"], f"{caller}: lr")
            if isinstance(lr, float) and lr < 0:
                raise ValueError(f"{caller}: lr must be >= 0, got {lr}")
        if "grad_norm" in fields:
            grad = _named_value(fields["grad_norm"], f"{caller}: grad_norm")
        values = {}
        for name, value in fields.get("values", {}).items():
            if not isinstance(name, str) or not _SCALAR_NAME.fullmatch(name):
                raise ValueError(f"{caller}: scalar name {name!r} is not 1-128 characters of "
                                 f"A-Z a-z 0-9 _ . / : -")
            values[name] = _named_value(value, f"{caller}: {name}")
        if loss is None and lr is None and grad is None and not values:
            return

        def fill(r):
            if loss is not None:
                r.loss = loss
            if lr is not None:
                r.learning_rate = lr
            if grad is not None:
                r.grad_norm = grad
            r.named_scalars.update(values)

        self._add(step, fill, 0, fields.get("loss"), fields.get("lr"), fields.get("grad_norm"),
                  *fields.get("values", {}).values())

    # ---- state ---------------------------------------------------------------

    @property
    def state(self) -> Optional[str]:
        """Latest health state name (e.g. "NORMAL", "PANIC_ZONE"); None before any Ack."""
        v = self._verdict
        return None if v is None else v.state

    @property
    def verdict(self) -> Optional[Verdict]:
        """Latest full verdict (state, reason, anomalies, step summary); None before any Ack."""
        return self._verdict

    @property
    def stats(self):
        """Delivery counters (enqueued, dropped_queue_full, sent, resent, acked,
        rejected, duplicates, late, encode_errors, reconnects)."""
        return self._sender.stats

    def on_state(self, callback: Callable[[Verdict], None]):
        """Calls callback(verdict) whenever the health state changes (also usable
        as a decorator). Runs on the ack thread; exceptions are logged."""
        with self._callbacks_lock:
            self._callbacks.append(callback)
        return callback

    # ---- lifecycle -----------------------------------------------------------

    def flush(self, timeout: Optional[float] = 10.0) -> bool:
        """Sends the current step's report now and waits up to timeout seconds
        (None: forever) until everything sent so far is acknowledged. Returns
        whether it was. Later log_* calls for the same step go out in another report."""
        self._hand_over()
        return self._sender.wait_idle(timeout)

    def close(self, finish: bool = False, timeout: Optional[float] = None) -> bool:
        """Sends what is pending, waits for acknowledgements (timeout seconds,
        default close_timeout_s) and stops the sender. finish=True then marks
        the run finished (EndRun): call it from one rank only, after all ranks
        logged their last step. Idempotent. Returns whether everything was
        acknowledged (and the run marked finished when asked)."""
        with self._lock:
            if self._closed:
                return True
            self._closed = True
        self._atexit.detach()
        timeout = self._close_timeout_s if timeout is None else timeout
        self._hand_over(closing=True)
        ok = self._sender.close(timeout)
        if finish:
            try:
                self._sender.stub.EndRun(pb.EndRunRequest(run_id=self.run_id),
                                         timeout=max(timeout, 1.0),
                                         metadata=self._sender.metadata or None)
            except Exception as e:  # never raise into the trainer over monitoring
                _sender.logger.warning("entrowatch: could not mark run %s finished: %s",
                                       self.run_id, e)
                ok = False
        self._sender.shutdown_channel()
        return ok

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        self.close()
        return False

    # ---- internals -----------------------------------------------------------

    def _add(self, step, fill, nbytes, *tensors):
        device_event = _arrays.cuda_event(*tensors)
        with self._lock:
            if self._closed:
                self._warn.warning("closed", "entrowatch: log call after close() ignored")
                return
            pending = self._pending
            if pending is None or step != pending.step:
                if step <= self._last_step:
                    self._warn.warning("step_back", "entrowatch: step %d is not after step %d, "
                                       "already sent; ignored (steps must increase)", step,
                                       self._last_step)
                    return
                if pending is not None:
                    self._offer(pending)
                pending = self._pending = _report.StepReport(step, time.time_ns())
                self._last_step = step
            fill(pending)
            pending.add(nbytes, device_event)

    def _hand_over(self, closing=False):
        with self._lock:
            if self._closed and not closing:
                return
            if self._pending is not None:
                self._offer(self._pending)
                self._pending = None

    def _offer(self, report):
        if self._aggregator is not None:
            report = self._combine(report)
            if report is None:
                return
        report.seq = self._next_seq
        self._next_seq += 1
        self._sender.offer(report)

    def _combine(self, report):
        """The group's report of the step on its rank 0, None on the other ranks,
        or report itself when the step goes out per rank."""
        dropped = _report.Dropped()  # counted here only when the step is aggregated
        try:
            combined = self._aggregator.combine(report, self._drop_nonfinite, dropped)
        except Exception as e:  # e.g. the process group is gone at exit
            self._warn.warning("aggregate", "entrowatch: step %d not aggregated (%s); sent by "
                               "this rank alone", report.step, e)
            return report
        if combined == "per-rank":
            self._warn.warning("aggregate_layout", "entrowatch: step %d logged differently on "
                               "the ranks of the group; each rank sends it itself", report.step)
            return report
        for name, value in vars(dropped).items():
            setattr(self.dropped, name, getattr(self.dropped, name) + value)
        if combined is None:
            return None
        summary, scalars, learning_rate = combined
        out = _report.StepReport(report.step, report.time_ns)
        out.summary = summary
        out.learning_rate = learning_rate
        out.named_scalars = scalars
        return out

    def _encode(self, report):
        return _report.encode(report, self.run_id, self.rank, self.world_size, self._phase,
                              self._drop_nonfinite, self.dropped)

    def _on_ack(self, ack):
        if not ack.HasField("verdict") or ack.verdict.state == pb.HEALTH_STATE_UNSPECIFIED:
            return
        previous = self._verdict
        verdict = _verdict_from_ack(ack)
        if previous is not None and verdict.step < previous.step:
            return
        self._verdict = verdict
        if previous is not None and previous.state == verdict.state:
            return
        with self._callbacks_lock:
            callbacks = list(self._callbacks)
        for callback in callbacks:
            try:
                callback(verdict)
            except Exception:
                _sender.logger.exception("entrowatch: on_state callback failed")


def _read_file(path, what):
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise ValueError(f"{what}: cannot read {path!r}: {e.strerror}") from None


def _credentials(token, token_file, tls_ca, tls_cert, tls_key):
    """Channel credentials (None: plaintext) and call metadata, as the CLI's flags."""
    if token is not None and token_file is not None:
        raise ValueError("give token or token_file, not both")
    if token_file is not None:
        token = _read_file(token_file, "token_file").decode().splitlines()[0].strip()
    if (tls_cert is None) != (tls_key is None):
        raise ValueError("tls_cert and tls_key go together")
    credentials = None
    if tls_ca is not None or tls_cert is not None:
        credentials = grpc.ssl_channel_credentials(
            root_certificates=_read_file(tls_ca, "tls_ca") if tls_ca else None,
            private_key=_read_file(tls_key, "tls_key") if tls_key else None,
            certificate_chain=_read_file(tls_cert, "tls_cert") if tls_cert else None)
    metadata = (("authorization", f"Bearer {token}"),) if token else ()
    return credentials, metadata


class _CloseAtExit:
    """Flushes a still-open Monitor at interpreter exit (weakly referenced)."""

    def __init__(self, monitor):
        self._ref = weakref.ref(monitor)
        self._pid = os.getpid()
        atexit.register(self._run)

    def _run(self):
        monitor = self._ref()
        # A forked child (a data loader worker) inherits the handler but not
        # the sender thread: only the creating process delivers the reports.
        if monitor is not None and os.getpid() == self._pid:
            monitor.close(timeout=min(monitor._close_timeout_s, 5.0))

    def detach(self):
        atexit.unregister(self._run)
