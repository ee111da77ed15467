"""In-job aggregation (Monitor(..., aggregate=group)) over 4 gloo processes: the
daemon sees one report per step and computes the same statistics and verdicts
as from the same values sent per rank."""

import json
import math
import os
import subprocess

import numpy as np
import pytest

from conftest import free_port
from entrowatch import _aggregate, _report
from entrowatch.v1 import entrowatch_pb2 as pb

HERE = os.path.dirname(os.path.abspath(__file__))
WORLD = 4
STEPS = 10
FAST_ANALYSIS = """
analysis:
  baseline: {warmup_steps: 4}
  states: {enter_steps: 2, exit_steps: 2}
"""


def run_job(daemon, tmp_path, run_id, mode):
    port = free_port()
    procs = []
    for rank in range(WORLD):
        env = dict(os.environ, RANK=str(rank), WORLD_SIZE=str(WORLD), MASTER_ADDR="127.0.0.1",
                   MASTER_PORT=str(port), OMP_NUM_THREADS="1")
        log = tmp_path / f"{run_id}-rank{rank}.log"
        out = tmp_path / f"{run_id}-rank{rank}.json"
        procs.append((subprocess.Popen(
            [os.environ["ENTROWATCH_PY_VENV_PYTHON"], os.path.join(HERE, "aggregate_worker.py"),
             daemon.grpc_address, run_id, str(STEPS), mode, str(out)],
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
    aggregated = run_job(daemon, tmp_path, "agg", "aggregate")
    per_rank = run_job(daemon, tmp_path, "per-rank", "per-rank")

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
            assert la.has_max_logit == lr.has_max_logit
            if la.has_max_logit:
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
