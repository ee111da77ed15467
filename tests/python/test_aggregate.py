"""In-job aggregation (Monitor(..., aggregate=group)) over 4 gloo processes: the
daemon sees one report per step and computes the same statistics and verdicts
as from the same values sent per rank."""

import concurrent.futures
import json
import math
import os
import subprocess

import grpc
import numpy as np
import pytest
import torch

import aggregate_worker
from conftest import free_port
from entrowatch import _aggregate, _report
from entrowatch.v1 import entrowatch_pb2 as pb
from entrowatch.v1 import entrowatch_pb2_grpc as pb_grpc
from reference import attention_entropy, bf16_round, token_entropy

HERE = os.path.dirname(os.path.abspath(__file__))
WORLD = 4
STEPS = 10
FAST_ANALYSIS = """
analysis:
  baseline: {warmup_steps: 4}
  states: {enter_steps: 2, exit_steps: 2}
"""


def run_job(address, tmp_path, run_id, mode):
    port = free_port()
    procs = []
    for rank in range(WORLD):
        env = dict(os.environ, RANK=str(rank), WORLD_SIZE=str(WORLD), MASTER_ADDR="127.0.0.1",
                   MASTER_PORT=str(port), OMP_NUM_THREADS="1")
        log = tmp_path / f"{run_id}-rank{rank}.log"
        out = tmp_path / f"{run_id}-rank{rank}.json"
        procs.append((subprocess.Popen(
            [os.environ["ENTROWATCH_PY_VENV_PYTHON"], os.path.join(HERE, "aggregate_worker.py"),
             address, run_id, str(STEPS), mode, str(out)],
            env=env, stdout=open(log, "wb"), stderr=subprocess.STDOUT), log, out))
    results = []
    for proc, log, out in procs:
        try:
            rc = proc.wait(180)
        except subprocess.TimeoutExpired:
            proc.kill()
            rc = proc.wait()
        assert rc == 0, log.read_text()
        results.append(json.loads(out.read_text()))
    return sorted(results, key=lambda r: r["rank"])


def get_run(daemon, run_id):
    return daemon.stub().GetRun(pb.GetRunRequest(run_id=run_id, history=64), timeout=10)


def test_aggregated_job_matches_the_same_job_sent_per_rank(daemon_factory, tmp_path):
    daemon = daemon_factory(FAST_ANALYSIS)
    aggregated = run_job(daemon.grpc_address, tmp_path, "agg", "aggregate")
    per_rank = run_job(daemon.grpc_address, tmp_path, "per-rank", "per-rank")

    # One report per step, from the group's rank 0 only.
    assert [r["stats"]["acked"] for r in aggregated] == [STEPS, 0, 0, 0]
    assert [r["stats"]["enqueued"] for r in aggregated] == [STEPS, 0, 0, 0]
    assert [r["stats"]["acked"] for r in per_rank] == [STEPS] * WORLD
    agg, ref = get_run(daemon, "agg"), get_run(daemon, "per-rank")
    assert (agg.reports_accepted, agg.reports_rejected) == (STEPS, 0)
    assert (ref.reports_accepted, ref.reports_rejected) == (WORLD * STEPS, 0)
    assert agg.finished and ref.finished and agg.world_size == WORLD

    # Quantiles: within 1.5 bins of the largest vocabulary (two vocabularies pool).
    bin_width = 1.5 * math.log(90) / _aggregate.HISTOGRAM_BINS
    assert [s.step for s in agg.history] == [s.step for s in ref.history] == list(range(STEPS))
    for a, r in zip(agg.history, ref.history):
        assert (a.ranks_reported, a.complete, a.world_size) == (WORLD, True, WORLD)
        assert a.token_count == r.token_count == WORLD * (11 + 5)
        assert a.generated_token_count == r.generated_token_count
        assert a.surprisal_count == r.surprisal_count
        for field in ("entropy_mean", "normalized_entropy_mean", "top1_prob_mean",
                      "surprisal_mean", "generated_entropy_mean"):
            assert getattr(a, field) == pytest.approx(getattr(r, field), rel=1e-5), field
        for field in ("entropy_p10", "entropy_p50", "entropy_p90"):
            assert abs(getattr(a, field) - getattr(r, field)) <= bin_width, field
        assert a.high_entropy_ratio == pytest.approx(r.high_entropy_ratio, abs=1e-12)
        assert (a.has_grad_norm, a.has_loss) == (True, True)
        assert a.grad_norm == pytest.approx(r.grad_norm, rel=1e-12)
        assert a.grad_norm_disagreements == r.grad_norm_disagreements
        assert a.loss == pytest.approx(r.loss, rel=1e-7)
        assert a.learning_rate == pytest.approx(r.learning_rate)
        assert dict(a.scalars) == pytest.approx(dict(r.scalars))
        assert [l.layer for l in a.layers] == [l.layer for l in r.layers] == [0, 2]
        for la, lr in zip(a.layers, r.layers):
            assert list(la.head_mean_entropy) == pytest.approx(list(lr.head_mean_entropy),
                                                               rel=1e-5)
            assert la.HasField("max_logit") == lr.HasField("max_logit")
            if la.HasField("max_logit"):
                assert la.max_logit == pytest.approx(lr.max_logit, rel=1e-5)
        assert [x.rank for x in a.ranks] == [x.rank for x in r.ranks] == list(range(WORLD))
        for xa, xr in zip(a.ranks, r.ranks):
            assert xa.token_count == xr.token_count
            assert xa.entropy_mean == pytest.approx(xr.entropy_mean, rel=1e-5)
            assert (xa.grad_norm, xa.loss) == (pytest.approx(xr.grad_norm),
                                               pytest.approx(xr.loss, rel=1e-7))
    assert agg.verdict.state == ref.verdict.state
    assert agg.verdict.state != pb.HEALTH_STATE_UNSPECIFIED
    assert sorted((x.pattern, x.subject) for x in agg.anomalies) == \
        sorted((x.pattern, x.subject) for x in ref.anomalies)
    for r in aggregated:
        print(f"rank {r['rank']}: per step, local summary {1e3 * np.median(r['local_s']):.2f} ms, "
              f"all_gather + all_reduce {1e3 * np.median(r['collectives_s']):.2f} ms (median)")


def test_local_summary_matches_float64_reference():
    """One rank's counters and histogram against a float64 reference, without a daemon."""
    rng = np.random.default_rng(3)
    logits = rng.normal(0, 2, (7, 40))
    logits[2, 30:] = -np.inf
    logits[4, 5] = np.nan  # dropped as non-finite
    report = _report.StepReport(0, 0)
    targets = np.array([1, 2, -100, 3, 4, 5, 39])
    kinds = np.array([pb.GENERATED, pb.PROMPT] * 3 + [pb.GENERATED])
    report.logits.append(_report.LogitsItem(logits, 40, 1.3, targets, kinds))
    dropped = _report.Dropped()
    local = _aggregate.LocalStep(report, True, dropped, 0.8)
    assert (dropped.rows_nonfinite, dropped.rows_ignored_target) == (1, 1)
    counters, lo, hi = local.vocabs[40].counters(math.log(40), 0.8)

    keep = [0, 1, 3, 5, 6]
    z = logits[keep] / 1.3
    logp = z - np.log(np.exp(z - z.max(1, keepdims=True)).sum(1, keepdims=True)) - z.max(1, keepdims=True)
    p = np.exp(logp)
    h = (-(p * logp).sum(1)).astype(np.float32).astype(np.float64)
    assert counters[_aggregate._V_COUNT] == 5
    assert counters[_aggregate._V_SUM] == pytest.approx(h.sum(), rel=1e-6)
    assert counters[_aggregate._V_SUM_SQ] == pytest.approx((h * h).sum(), rel=1e-6)
    assert counters[_aggregate._V_HIGH] == np.count_nonzero(h / math.log(40) >= 0.8)
    generated = kinds[keep] == pb.GENERATED
    assert counters[_aggregate._V_GEN_COUNT] == generated.sum() == 2
    assert counters[_aggregate._V_GEN_SUM] == pytest.approx(h[generated].sum(), rel=1e-6)
    assert counters[_aggregate._V_TOP1_SUM] == pytest.approx(p.max(1).sum(), rel=1e-6)
    surprisal = -logp[np.arange(5), targets[keep]]
    assert counters[_aggregate._V_SURP_SUM] == pytest.approx(surprisal.sum(), rel=1e-6)
    hist = counters[_aggregate._V_COUNTERS:]
    assert hist.sum() == 5
    want = np.minimum(2047, np.floor(h / math.log(40) * 2048)).astype(int)
    assert sorted(np.flatnonzero(hist).tolist()) == sorted(set(want.tolist()))
    assert (lo, hi) == (pytest.approx(h.min()), pytest.approx(h.max()))


def test_attention_entropies_match_the_reference():
    from reference import attention_entropy
    rng = np.random.default_rng(5)
    q = rng.normal(0, 1, (4, 3, 8)).astype(np.float32)
    k = rng.normal(0, 1, (2, 6, 8)).astype(np.float32)
    sums, max_logit = _aggregate._attention_entropies(q, k, True, None)
    want = attention_entropy(q, k, causal=True)
    assert sums == pytest.approx(want.sum(axis=1), rel=1e-9)
    scores = np.einsum("hqd,hkd->hqk", q.astype(np.float64),
                       np.repeat(k, 2, axis=0).astype(np.float64)) / math.sqrt(8)
    mask = np.arange(6)[None, :] <= np.arange(3, 6)[:, None]
    assert max_logit == pytest.approx(scores[:, mask].max(), rel=1e-9)


class _Capture(pb_grpc.MonitorServicer):
    """A Monitor service that keeps every Report and acknowledges it."""

    def __init__(self):
        self.reports = []

    def Stream(self, request_iterator, context):
        for report in request_iterator:
            self.reports.append(report)
            yield pb.Ack(seq=report.seq, step=report.step)

    def EndRun(self, request, context):
        return pb.EndRunResponse()


class _Recorder:
    """Stands in for a Monitor to read back what aggregate_worker logs."""

    def __init__(self):
        self.calls = {}

    def __getattr__(self, name):
        return lambda step, *args, **kwargs: self.calls.setdefault(name, []).append((args, kwargs))


def _pooled_reference(step):
    """float64 statistics of one step pooled over the ranks' raw values."""
    by_vocab = {90: [], aggregate_worker.ENTROPY_VOCAB: []}
    top1, surprisal, generated, ranks, heads0, heads2 = [], [], [], [], [], []
    for rank in range(WORLD):
        rec = _Recorder()
        aggregate_worker.log_step(rec, rank, step)
        (args, kw), = rec.calls["log_logits"]
        logits = args[0].float().numpy().reshape(12, -1)
        if args[0].dtype == torch.bfloat16:
            logits = bf16_round(logits)
        keep = kw["targets"].reshape(-1).numpy() >= 0
        z = logits[keep, :90] / 0.9
        h = token_entropy(logits[keep], temperature=0.9, valid_vocab=90).astype(np.float32)
        logp = z - z.max(1, keepdims=True)
        logp -= np.log(np.exp(logp).sum(1, keepdims=True))
        top1.append(np.exp(logp).max(1))
        surprisal.append(-logp[np.arange(keep.sum()), kw["targets"].reshape(-1).numpy()[keep]])
        generated.append(kw["token_kinds"].reshape(-1).numpy()[keep] == pb.GENERATED)
        (args, kw), = rec.calls["log_token_entropies"]
        by_vocab[90].append(h.astype(np.float64))
        by_vocab[aggregate_worker.ENTROPY_VOCAB].append(args[0].astype(np.float64))
        (args, kw), = rec.calls["log_attention"]
        heads0.append(attention_entropy(args[1].numpy(), args[2].numpy()).sum(axis=1))
        (args, kw), = rec.calls["log_attention_entropies"]
        heads2.append(args[1].astype(np.float64))
        (args, _), = rec.calls["log_grad_norm"]
        (_, kw), = rec.calls["log_scalars"]
        mine = np.concatenate([h, by_vocab[aggregate_worker.ENTROPY_VOCAB][-1]])
        ranks.append((rank, mine.size, mine.mean(), args[0], float(kw["loss"]), kw["reward"]))
    return by_vocab, np.concatenate(top1), np.concatenate(surprisal), \
        np.concatenate(generated), ranks, heads0, heads2


def test_aggregate_summary_equals_the_pooled_raw_values(tmp_path):
    """4 gloo processes; the one Report per step against float64 pooling in Python."""
    capture = _Capture()
    server = grpc.server(concurrent.futures.ThreadPoolExecutor(4))
    pb_grpc.add_MonitorServicer_to_server(capture, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        results = run_job(f"127.0.0.1:{port}", tmp_path, "agg-capture", "aggregate")
    finally:
        server.stop(0)
    assert [r["stats"]["acked"] for r in results] == [STEPS, 0, 0, 0]
    assert sorted(r.step for r in capture.reports) == list(range(STEPS))
    for report in capture.reports:
        by_vocab, top1, surprisal, generated, ranks, heads0, heads2 = \
            _pooled_reference(report.step)
        assert (report.rank, report.world_size) == (0, WORLD)
        assert not report.logits and not report.attention and not report.HasField("grad")
        assert not report.scalars.HasField("loss")
        assert report.scalars.learning_rate == pytest.approx(1e-3)
        assert dict(report.scalars.values) == pytest.approx(
            {"reward": np.mean([r[5] for r in ranks])})
        summaries = {e.vocab_size: e for e in report.summary.entropy}
        assert sorted(summaries) == sorted(by_vocab)
        for v, values in by_vocab.items():
            h = np.concatenate(values)
            e = summaries[v]
            assert e.count == h.size
            assert e.sum == pytest.approx(h.sum(), rel=1e-5)
            assert e.sum_squares == pytest.approx((h * h).sum(), rel=1e-5)
            assert (e.min, e.max) == (pytest.approx(h.min(), abs=1e-5),
                                      pytest.approx(h.max(), abs=1e-5))
            bins = np.minimum(2047, np.floor(h / math.log(v) * 2048)).astype(int)
            want = np.bincount(bins, minlength=2048)
            assert len(e.histogram) == 2048 and sum(e.histogram) == h.size
            assert np.abs(np.array(e.histogram) - want).sum() <= 2  # float32 rounding at an edge
            assert e.high_entropy_threshold == pytest.approx(0.8)
            assert e.high_entropy_count == np.count_nonzero(
                np.minimum(1, h / math.log(v)).astype(np.float32) >= np.float32(0.8))
        e = summaries[90]
        assert e.top1_count == top1.size and e.top1_prob_sum == pytest.approx(top1.sum(), rel=1e-5)
        assert e.surprisal_count == surprisal.size
        assert e.surprisal_sum == pytest.approx(surprisal.sum(), rel=1e-5)
        assert e.generated_count == generated.sum()
        assert e.generated_sum == pytest.approx(np.concatenate(by_vocab[90])[generated].sum(),
                                                rel=1e-6)
        layers = {a.layer: a for a in report.summary.attention}
        assert list(layers[0].head_entropy_sum) == pytest.approx(list(np.sum(heads0, axis=0)),
                                                                 rel=1e-5)
        assert list(layers[0].head_count) == [5 * WORLD] * 4
        assert layers[0].HasField("max_logit")
        assert list(layers[2].head_entropy_sum) == pytest.approx(list(np.sum(heads2, axis=0)),
                                                                 rel=1e-6)
        assert list(layers[2].head_count) == [WORLD] * 3
        assert [(r.rank, r.token_count) for r in report.summary.ranks] == \
            [(r[0], r[1]) for r in ranks]
        for got, want in zip(report.summary.ranks, ranks):
            assert got.entropy_mean == pytest.approx(want[2], rel=1e-5)
            assert (got.has_grad_norm, got.grad_norm) == (True, pytest.approx(want[3]))
            assert (got.has_loss, got.loss) == (True, pytest.approx(want[4], rel=1e-6))


def test_aggregate_needs_an_initialized_process_group():
    import entrowatch
    with pytest.raises(ValueError, match="initialized torch.distributed"):
        entrowatch.Monitor("127.0.0.1:1", run_id="no-group", rank=0, world_size=1,
                           aggregate=object())  # any group: none is initialized here
