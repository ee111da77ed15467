"""Call-site checks and the never-hurt-the-trainer guarantees (no daemon needed:
the Monitor points at a loopback port nobody listens on)."""

import os
import subprocess
import time

import numpy as np
import pytest
import torch

import entrowatch
from conftest import free_port


@pytest.fixture
def mon():
    m = entrowatch.Monitor(f"127.0.0.1:{free_port()}", run_id="args", rank=0, world_size=1,
                           close_timeout_s=0.2)
    yield m
    m.close()


BAD_CALLS = [
    ("logits 1-D", lambda m: m.log_logits(0, torch.randn(10)), ValueError, r"at least 2 dims"),
    ("logits int", lambda m: m.log_logits(0, torch.ones(2, 3, dtype=torch.int64)), TypeError,
     r"logits must be floating point"),
    ("logits bool numpy", lambda m: m.log_logits(0, np.ones((2, 3), dtype=bool)), TypeError,
     r"floating point"),
    ("logits not a tensor", lambda m: m.log_logits(0, "abc"), TypeError, r"torch tensor or a numpy"),
    ("targets shape", lambda m: m.log_logits(0, torch.randn(4, 8), targets=torch.zeros(3,
                                                                                     dtype=torch.long)),
     ValueError, r"targets must have one entry per row"),
    ("targets float", lambda m: m.log_logits(0, torch.randn(4, 8), targets=torch.zeros(4)),
     TypeError, r"targets must hold integers"),
    ("valid_vocab too big", lambda m: m.log_logits(0, torch.randn(4, 8), valid_vocab=9),
     ValueError, r"valid_vocab must be in \[1, 8\]"),
    ("temperature", lambda m: m.log_logits(0, torch.randn(4, 8), temperature=0), ValueError,
     r"temperature must be > 0"),
    ("negative step", lambda m: m.log_scalars(-1, loss=1.0), ValueError, r"step must be >= 0"),
    ("float step", lambda m: m.log_scalars(1.5, loss=1.0), TypeError, r"step must be an int"),
    ("entropies int", lambda m: m.log_token_entropies(0, np.arange(3), vocab_size=10), TypeError,
     r"entropies must be floating point"),
    ("entropies no vocab", lambda m: m.log_token_entropies(0, np.ones(3), vocab_size=0),
     ValueError, r"vocab_size must be an int >= 1"),
    ("q rank", lambda m: m.log_attention(0, 0, torch.randn(4, 8), torch.randn(4, 8)), ValueError,
     r"q and k must both be"),
    ("head dims", lambda m: m.log_attention(0, 0, torch.randn(4, 8, 16), torch.randn(4, 8, 32)),
     ValueError, r"head dims differ"),
    ("gqa", lambda m: m.log_attention(0, 0, torch.randn(4, 8, 16), torch.randn(3, 8, 16)),
     ValueError, r"multiple of k heads"),
    ("causal nq > nk", lambda m: m.log_attention(0, 0, torch.randn(2, 9, 16), torch.randn(2, 8, 16)),
     ValueError, r"nq <= nk when causal"),
    ("q/k dtypes", lambda m: m.log_attention(0, 0, torch.randn(2, 8, 16),
                                             torch.randn(2, 8, 16).half()), TypeError,
     r"same dtype"),
    ("layer", lambda m: m.log_attention_entropies(0, -1, [1.0]), ValueError, r"layer must be"),
    ("head entropies 2-D", lambda m: m.log_attention_entropies(0, 0, np.ones((2, 2))), ValueError,
     r"head_entropy must be 1-D"),
    ("grad norm tensor", lambda m: m.log_grad_norm(0, torch.ones(3)), ValueError,
     r"grad norm must be a scalar"),
    ("per_layer value", lambda m: m.log_grad_norm(0, 1.0, per_layer=True), ValueError,
     r"per_layer=True needs a module"),
    ("loss string", lambda m: m.log_scalars(0, loss="x"), TypeError, r"loss must be a number"),
    ("negative lr", lambda m: m.log_scalars(0, lr=-1.0), ValueError, r"lr must be >= 0"),
]


@pytest.mark.parametrize("name,call,error,message", BAD_CALLS, ids=[c[0] for c in BAD_CALLS])
def test_bad_arguments_raise_at_call_site(mon, name, call, error, message):
    with pytest.raises(error, match=message):
        call(mon)
    assert mon.stats.enqueued == 0


def test_constructor_arguments():
    with pytest.raises(ValueError, match="run_id must be"):
        entrowatch.Monitor("127.0.0.1:1", run_id="has space")
    with pytest.raises(ValueError, match="outside world_size"):
        entrowatch.Monitor("127.0.0.1:1", run_id="r", rank=2, world_size=2)
    with pytest.raises(ValueError, match="nonfinite"):
        entrowatch.Monitor("127.0.0.1:1", run_id="r", nonfinite="maybe")


def test_rank_and_world_size_from_environment(monkeypatch):
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("WORLD_SIZE", "8")
    with entrowatch.Monitor("127.0.0.1:1", run_id="env", close_timeout_s=0) as m:
        assert (m.rank, m.world_size) == (3, 8)


def test_daemon_down_never_raises_and_queue_stays_bounded(caplog):
    m = entrowatch.Monitor(f"127.0.0.1:{free_port()}", run_id="down", rank=0, world_size=1,
                           max_queue_reports=4, max_inflight=2)
    logits = torch.randn(16, 64)
    latencies = []
    for step in range(200):
        t0 = time.perf_counter()
        m.log_logits(step, logits)
        m.log_scalars(step, loss=1.0, lr=1e-3)
        latencies.append(time.perf_counter() - t0)
    assert m.stats.dropped_queue_full > 0
    assert m.stats.enqueued + m.stats.dropped_queue_full == 199  # step 199 still pending
    assert m.stats.acked == 0
    assert any("queue is full" in r.message for r in caplog.records)
    # Rate-limited: far fewer warnings than drops.
    assert sum("queue is full" in r.message for r in caplog.records) < 5
    t0 = time.perf_counter()
    assert m.close(timeout=0.5) is False
    assert time.perf_counter() - t0 < 5
    assert m.state is None
    assert sorted(latencies)[len(latencies) // 2] < 0.01


def test_log_after_close_is_ignored():
    m = entrowatch.Monitor("127.0.0.1:1", run_id="closed", rank=0, world_size=1)
    m.close(timeout=0)
    m.log_scalars(1, loss=1.0)
    assert m.stats.enqueued == 0



FORK_SCRIPT = """
import os, sys, time
import entrowatch
m = entrowatch.Monitor("127.0.0.1:%d", run_id="fork", rank=0, world_size=1, close_timeout_s=30)
m.log_scalars(0, loss=1.0)
m.flush(timeout=0)
pid = os.fork()
if pid == 0:
    sys.exit(0)  # runs the atexit handlers the child inherited
t0 = time.perf_counter()
while time.perf_counter() - t0 < 10:
    done, status = os.waitpid(pid, os.WNOHANG)
    if done:
        break
    time.sleep(0.01)
else:
    os.kill(pid, 9)
    os.waitpid(pid, 0)
    status = 1 << 8
print(os.waitstatus_to_exitcode(status), time.perf_counter() - t0)
m.close(timeout=0)
"""


def test_forked_child_does_not_wait_for_the_parents_reports():
    out = subprocess.run([os.environ["ENTROWATCH_PY_VENV_PYTHON"], "-c", FORK_SCRIPT % free_port()],
                         capture_output=True, text=True, timeout=60)
    code, seconds = out.stdout.split()
    assert int(code) == 0 and float(seconds) < 5, out.stdout + out.stderr
