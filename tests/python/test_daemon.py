"""The client against a real entrowatchd: round trips, states, restarts."""

import math
import os
import signal
import subprocess
import time

import numpy as np
import pytest
import torch

import entrowatch
import entrowatch.torch
from conftest import free_port
from entrowatch.v1 import entrowatch_pb2 as pb
from reference import attention_entropy, bf16_round, token_entropy

HERE = os.path.dirname(os.path.abspath(__file__))

FAST_ANALYSIS = """
analysis:
  baseline: {warmup_steps: 5}
  states: {enter_steps: 2, exit_steps: 2}
"""


def get_run(daemon, run_id, history=64):
    return daemon.stub().GetRun(pb.GetRunRequest(run_id=run_id, history=history), timeout=10)


def history_by_step(daemon, run_id):
    return {s.step: s for s in get_run(daemon, run_id).history}


def metric_value(text, name, **labels):
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return None


def test_round_trip_of_every_log_call(daemon):
    rng = np.random.default_rng(7)
    mon = entrowatch.Monitor(daemon.grpc_address, run_id="roundtrip", rank=0, world_size=1)

    # Step 0: bf16 torch logits [batch, seq, vocab], padded vocab, targets with ignore_index.
    logits = torch.from_numpy(rng.normal(0, 3, (2, 5, 40)).astype(np.float32)).bfloat16()
    targets = torch.from_numpy(rng.integers(0, 30, (2, 5)))
    targets[0, 0] = -100
    mon.log_logits(0, logits, rows=None, valid_vocab=30, temperature=0.7, targets=targets)
    # Step 1: numpy float64 logits with -inf (masked) entries, sampled rows.
    logits64 = rng.normal(0, 1, (64, 50))
    logits64[:, 45:] = -np.inf
    mon.log_logits(1, logits64, rows=16)
    # Step 2: entropies computed by the caller, with token kinds.
    ent = rng.uniform(0, math.log(100), 12).astype(np.float32)
    kinds = np.array([entrowatch.PROMPT] * 6 + [entrowatch.GENERATED] * 6)
    mon.log_token_entropies(2, torch.from_numpy(ent), vocab_size=100, token_kinds=kinds)
    # Step 3: attention Q/K with GQA, batched fp16 tensors.
    q = torch.from_numpy(rng.normal(0, 1, (2, 4, 6, 8)).astype(np.float32)).half()
    k = torch.from_numpy(rng.normal(0, 1, (2, 2, 6, 8)).astype(np.float32)).half()
    mon.log_attention(3, 1, q, k, causal=True, batch_index=1)
    # Step 4: per-head entropies, grad norm and scalars.
    heads = np.array([0.5, 1.0, 1.5], dtype=np.float32)
    mon.log_attention_entropies(4, 2, heads)
    mon.log_grad_norm(4, torch.tensor(2.5))
    mon.log_scalars(4, loss=torch.tensor(3.25), lr=1e-3)
    # Step 5: sampled rows keep their targets: each row is confident in its own target.
    peaks = torch.from_numpy(rng.permutation(60)[:48])
    confident = torch.zeros(6, 8, 60)
    confident.view(48, 60)[torch.arange(48), peaks] = 30.0
    mon.log_logits(5, confident, rows=10, targets=peaks.view(6, 8))
    mon.log_logits(5, confident.bfloat16(), rows=10, targets=peaks.view(6, 8),
                   token_kinds=torch.full((6, 8), entrowatch.GENERATED))
    assert mon.flush(20), vars(mon.stats)
    assert mon.stats.acked == 6 and mon.stats.rejected == 0

    steps = history_by_step(daemon, "roundtrip")
    rows = bf16_round(logits.float().numpy().reshape(10, 40))[1:]  # row 0's target is ignored
    want = token_entropy(rows, temperature=0.7, valid_vocab=30)
    assert steps[0].token_count == 9
    assert steps[0].entropy_mean == pytest.approx(want.mean(), rel=1e-4)
    assert steps[0].surprisal_count == 9
    assert steps[1].token_count == 16
    assert 0 < steps[1].entropy_mean <= math.log(45)
    assert steps[1].entropy_mean == pytest.approx(token_entropy(logits64[:, :45]).mean(), rel=0.1)
    assert steps[2].token_count == 12
    assert steps[2].entropy_mean == pytest.approx(ent.astype(np.float64).mean(), rel=1e-5)
    assert steps[2].generated_token_count == 6
    assert steps[2].generated_entropy_mean == pytest.approx(ent[6:].astype(np.float64).mean(),
                                                             rel=1e-5)
    (layer,) = steps[3].layers
    ref = attention_entropy(q[1].float().numpy(), k[1].float().numpy(), causal=True)
    assert layer.layer == 1
    assert list(layer.head_mean_entropy) == pytest.approx(ref.mean(axis=1), rel=1e-3, abs=1e-4)
    (layer,) = steps[4].layers
    assert (layer.layer, list(layer.head_mean_entropy)) == (2, pytest.approx([0.5, 1.0, 1.5]))
    assert steps[4].has_grad_norm and steps[4].grad_norm == pytest.approx(2.5)
    assert steps[4].has_loss and steps[4].loss == pytest.approx(3.25)
    assert steps[4].learning_rate == pytest.approx(1e-3)
    assert steps[5].surprisal_count == 20 and steps[5].surprisal_mean < 1e-6
    assert steps[5].generated_token_count == 10

    text = daemon.metrics()
    assert metric_value(text, "entrowatch_grad_norm", run="roundtrip") == pytest.approx(2.5)
    assert metric_value(text, "entrowatch_loss", run="roundtrip") == pytest.approx(3.25)
    assert mon.close(finish=True)
    assert get_run(daemon, "roundtrip").finished
    assert metric_value(daemon.metrics(), "entrowatch_run_finished", run="roundtrip") == 1


def test_nonfinite_values_are_dropped_or_rejected(daemon):
    bad = np.random.default_rng(1).normal(0, 1, (8, 20)).astype(np.float32)
    bad[3, 5] = np.nan
    bad[6, 0] = np.inf
    with entrowatch.Monitor(daemon.grpc_address, run_id="nonfinite", rank=0,
                            world_size=1) as mon:
        mon.log_logits(0, bad, rows=None)
        mon.log_grad_norm(0, float("nan"))
        mon.log_scalars(0, loss=1.0)
        assert mon.flush(20)
        assert mon.stats.rejected == 0
        assert mon.dropped.rows_nonfinite == 2 and mon.dropped.scalars_nonfinite == 1
    step = history_by_step(daemon, "nonfinite")[0]
    assert step.token_count == 6 and not step.has_grad_norm and step.has_loss

    with entrowatch.Monitor(daemon.grpc_address, run_id="nonfinite-send", rank=0, world_size=1,
                            nonfinite="send") as mon:
        mon.log_logits(0, bad, rows=None)
        mon.log_scalars(1, loss=1.0)  # the stream goes on after a rejected report
        assert mon.flush(20)
        assert (mon.stats.acked, mon.stats.rejected) == (2, 1)


def test_phase_is_reported(daemon):
    with entrowatch.Monitor(daemon.grpc_address, run_id="eval-run", rank=0, world_size=1,
                            phase="eval") as mon:
        mon.log_token_entropies(0, [1.0, 2.0], vocab_size=10)
        assert mon.flush(20)
    assert history_by_step(daemon, "eval-run")[0].phase == pb.EVAL


def _log_step(mon, step, rng, entropy_scale, grad_norm):
    logits = rng.normal(0, 1, (32, 64)) * entropy_scale
    mon.log_logits(step, logits.astype(np.float32))
    mon.log_grad_norm(step, grad_norm * math.exp(rng.normal(0, 0.05)))
    mon.log_scalars(step, loss=2.0, lr=1e-3)


def test_states_are_visible_through_state_and_on_state(daemon_factory):
    daemon = daemon_factory(FAST_ANALYSIS)
    rng = np.random.default_rng(3)
    mon = entrowatch.Monitor(daemon.grpc_address, run_id="states", rank=0, world_size=1)
    seen = []
    mon.on_state(lambda v: seen.append(v.state))
    for step in range(3):
        _log_step(mon, step, rng, 1.0, 1.0)
    assert mon.flush(20)
    assert mon.state == "WARMUP"
    for step in range(3, 15):
        _log_step(mon, step, rng, 1.0, 1.0)
    assert mon.flush(20)
    assert mon.state == "NORMAL"
    # Near one-hot logits (entropy collapses) with a 50x gradient norm.
    for step in range(15, 22):
        _log_step(mon, step, rng, 60.0, 50.0)
    assert mon.flush(20)
    assert mon.state == "PATHOLOGICAL_CONFIDENCE", mon.verdict
    assert mon.verdict.recommended_action
    assert "ENTROPY_COLLAPSE" in {a.pattern for a in mon.verdict.anomalies}
    assert seen[:3] == ["WARMUP", "NORMAL", "PATHOLOGICAL_CONFIDENCE"]
    assert mon.verdict.summary.step == mon.verdict.step
    text = daemon.metrics()
    assert metric_value(text, "entrowatch_health_state", run="states",
                        state="PATHOLOGICAL_CONFIDENCE") == 1
    mon.close()


def test_daemon_killed_and_restarted_mid_run(daemon_factory):
    daemon = daemon_factory()
    rng = np.random.default_rng(5)
    mon = entrowatch.Monitor(daemon.grpc_address, run_id="restart", rank=0, world_size=1,
                             reconnect_max_s=0.2)
    for step in range(10):
        _log_step(mon, step, rng, 1.0, 1.0)
    assert mon.flush(20)
    port = daemon.grpc_port
    daemon.kill()
    for step in range(10, 30):  # the loop never notices the daemon is gone
        _log_step(mon, step, rng, 1.0, 1.0)
    mon.flush(timeout=0.5)
    assert mon.stats.acked == 10
    daemon.start(grpc_port=port)
    for step in range(30, 40):
        _log_step(mon, step, rng, 1.0, 1.0)
    assert mon.flush(30), vars(mon.stats)
    assert mon.stats.reconnects >= 1 and mon.stats.dropped_queue_full == 0
    run = get_run(daemon, "restart", history=64)
    # Everything logged while the daemon was down reached the new one.
    assert {s.step for s in run.history} >= set(range(10, 39))
    assert run.last_step == 39
    assert mon.close()


def test_torch_watch_hooks_and_grad_norm(daemon):
    torch.manual_seed(0)
    layer = torch.nn.TransformerEncoderLayer(d_model=32, nhead=4, dim_feedforward=64,
                                             batch_first=True, dropout=0.0)
    embed, head = torch.nn.Embedding(50, 32), torch.nn.Linear(32, 50)
    model = torch.nn.Sequential(embed, layer, head)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    mon = entrowatch.Monitor(daemon.grpc_address, run_id="watch", rank=0, world_size=1, rows=8)
    w = entrowatch.torch.watch(model, mon, lm_head=head, attention_modules=[layer.self_attn],
                               every=2)
    for _ in range(6):
        x = torch.randint(0, 50, (3, 10))
        loss = torch.nn.functional.cross_entropy(model(x).reshape(-1, 50), x.reshape(-1))
        loss.backward()
        w.log_grad_norm(per_layer=True)
        want_norm = math.sqrt(sum(float(p.grad.double().square().sum())
                                  for p in model.parameters()))
        opt.step()
        opt.zero_grad()
        if w.step % 2 == 0:
            mon.log_scalars(w.step, loss=loss.detach())
            last_norm = want_norm
    with torch.no_grad():
        model.eval()
        model(torch.randint(0, 50, (3, 10)))  # eval forwards are not logged
    assert mon.flush(20)
    w.remove()
    steps = history_by_step(daemon, "watch")
    assert sorted(steps) == [0, 2, 4]
    for s in steps.values():
        assert s.token_count == 8 and s.has_grad_norm and s.has_loss
        assert [l.layer for l in s.layers] == [0] and len(s.layers[0].head_mean_entropy) == 4
        assert 0 < s.layers[0].mean_entropy <= math.log(10)
    assert steps[4].grad_norm == pytest.approx(last_norm, rel=1e-4)
    mon.close()


def test_ddp_ranks_report_one_step_together(daemon, tmp_path):
    port = free_port()
    procs = []
    for rank in range(2):
        env = dict(os.environ, RANK=str(rank), WORLD_SIZE="2", MASTER_ADDR="127.0.0.1",
                   MASTER_PORT=str(port), OMP_NUM_THREADS="1")
        log = open(tmp_path / f"rank{rank}.log", "wb")
        procs.append((subprocess.Popen(
            [os.environ["ENTROWATCH_PY_VENV_PYTHON"], os.path.join(HERE, "ddp_worker.py"),
             daemon.grpc_address, "ddp", "4"], env=env, stdout=log, stderr=subprocess.STDOUT),
            tmp_path / f"rank{rank}.log"))
    for proc, log in procs:
        try:
            rc = proc.wait(120)
        except subprocess.TimeoutExpired:
            proc.kill()
            rc = proc.wait()
        assert rc == 0, log.read_text()
    run = get_run(daemon, "ddp")
    assert run.world_size == 2 and run.finished
    steps = {s.step: s for s in run.history}
    assert sorted(steps) == [0, 1, 2, 3]
    for s in steps.values():
        assert (s.ranks_reported, s.complete) == (2, True)
        assert s.token_count == 2 * 32 and s.has_grad_norm
        assert s.grad_norm_disagreements == 0  # DDP all-reduced the gradients
        assert len(s.layers) == 1


def test_tiny_lm_example_runs_monitored(daemon):
    example = os.path.join(HERE, "..", "..", "examples", "train_tiny_lm.py")
    out = subprocess.run(
        [os.environ["ENTROWATCH_PY_VENV_PYTHON"], example, "--address", daemon.grpc_address,
         "--run-id", "example", "--steps", "3", "--batch", "2", "--context", "16", "--finish"],
        capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "reports acked 3, dropped 0" in out.stdout
    run = get_run(daemon, "example")
    assert run.finished and [s.step for s in run.history] == [0, 1, 2]
    assert all(s.token_count == 32 and len(s.layers) == 4 for s in run.history)


def test_stalled_daemon_never_blocks_the_loop(daemon):
    mon = entrowatch.Monitor(daemon.grpc_address, run_id="stalled", rank=0, world_size=1,
                             max_queue_reports=8, max_inflight=4)
    rng = np.random.default_rng(9)
    _log_step(mon, 0, rng, 1.0, 1.0)
    assert mon.flush(20)
    os.kill(daemon.proc.pid, signal.SIGSTOP)
    try:
        slowest = 0.0
        for step in range(1, 60):
            t0 = time.perf_counter()
            _log_step(mon, step, rng, 1.0, 1.0)
            slowest = max(slowest, time.perf_counter() - t0)
        assert not mon.flush(timeout=0.5)
    finally:
        os.kill(daemon.proc.pid, signal.SIGCONT)
    assert slowest < 0.5
    assert mon.stats.dropped_queue_full > 0
    # Once the daemon runs again, everything that was kept is delivered.
    assert mon.flush(30), vars(mon.stats)
    assert mon.stats.acked == mon.stats.enqueued
    assert mon.close()
