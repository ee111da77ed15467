"""Named scalars: log_scalars(reward=..., kl=...) and log_metrics(trainer dicts)."""

import numpy as np
import pytest
import torch

import entrowatch
from entrowatch.v1 import entrowatch_pb2 as pb


def get_history(daemon, run_id):
    run = daemon.stub().GetRun(pb.GetRunRequest(run_id=run_id, history=64), timeout=10)
    return {s.step: s for s in run.history}


def capture_wire(mon):
    """Records every Report the Monitor encodes for the wire (sender thread)."""
    sent = []
    encode = mon._sender._encode

    def recording(report):
        out = encode(report)
        sent.append(pb.Report.FromString(out))
        return out

    mon._sender._encode = recording
    return sent


VERL = {
    "actor/entropy": 1.25, "actor/grad_norm": 0.75, "critic/rewards/mean": 0.5,
    "actor/ppo_kl": 0.002, "actor/kl_loss": 0.03, "response_length/mean": 211.5,
    "actor/pg_clipfrac": 0.125, "actor/pg_loss": -0.04, "actor/lr": 1e-6,
    "critic/score/mean": 0.5, "timing_s/gen": 3.5,
}
TRL = {"loss": 0.0125, "grad_norm": 2.5, "learning_rate": 5e-7, "reward": 0.75,
       "reward_std": 0.25, "kl": 0.0625, "entropy": 0.875, "completion_length": 64.0,
       "clip_ratio": 0.0, "epoch": 0.5}


def test_named_scalars_go_on_the_wire_and_the_daemon_accepts_them(daemon):
    with entrowatch.Monitor(daemon.grpc_address, run_id="named-scalars", rank=0,
                            world_size=1) as mon:
        sent = capture_wire(mon)
        mon.log_scalars(0, loss=2.5, lr=1e-3, reward=0.5, kl=torch.tensor(0.25),
                        clip_fraction=np.float32(0.125), advantage_std=np.array([1.5]))
        mon.log_metrics(1, VERL)
        mon.log_metrics(2, TRL)
        # Two calls of one step merge; the later value of a name wins.
        mon.log_scalars(3, reward=0.1)
        mon.log_scalars(3, reward=0.2, response_length=12)
        assert mon.flush(20)
        assert mon.stats.rejected == 0 and mon.stats.acked == 4

    by_step = {r.step: r for r in sent}
    s0 = by_step[0].scalars
    assert (s0.loss, s0.learning_rate) == (2.5, 1e-3)
    assert dict(s0.values) == {"reward": 0.5, "kl": 0.25, "clip_fraction": 0.125,
                               "advantage_std": 1.5}

    r1 = by_step[1]
    assert r1.grad.global_norm == 0.75
    assert r1.scalars.learning_rate == 1e-6
    assert dict(r1.scalars.values) == {
        "entropy": 1.25, "reward": 0.5, "actor/ppo_kl": 0.002, "kl": 0.03,
        "response_length": 211.5, "clip_fraction": 0.125, "actor/pg_loss": -0.04,
        "critic/score/mean": 0.5, "timing_s/gen": 3.5}

    r2 = by_step[2]
    assert (r2.scalars.loss, r2.scalars.learning_rate, r2.grad.global_norm) == (0.0125, 5e-7, 2.5)
    assert dict(r2.scalars.values) == {"reward": 0.75, "reward_std": 0.25, "kl": 0.0625,
                                       "entropy": 0.875, "response_length": 64.0,
                                       "clip_fraction": 0.0, "epoch": 0.5}
    assert dict(by_step[3].scalars.values) == {"reward": 0.2, "response_length": 12.0}

    # What the daemon of any version keeps from these reports.
    history = get_history(daemon, "named-scalars")
    assert history[0].has_loss and history[0].loss == 2.5
    assert history[0].learning_rate == 1e-3
    assert history[1].has_grad_norm and history[1].grad_norm == 0.75
    assert history[2].loss == 0.0125 and history[2].grad_norm == 2.5


def test_named_scalars_reach_the_step_summary(daemon):
    with entrowatch.Monitor(daemon.grpc_address, run_id="named-summary", rank=0,
                            world_size=1) as mon:
        mon.log_scalars(0, loss=1.0, reward=0.5, kl=0.25)
        mon.log_metrics(1, VERL)
        mon.log_scalars(2, reward=0.75)
        assert mon.flush(20)
    history = get_history(daemon, "named-summary")
    assert dict(history[0].scalars) == {"reward": 0.5, "kl": 0.25}
    assert history[0].has_loss and history[0].loss == 1.0
    assert history[1].scalars["reward"] == 0.5 and history[1].scalars["kl"] == 0.03
    # Named values alone carry no loss: the step has none, not a loss of 0.
    assert dict(history[2].scalars) == {"reward": 0.75}
    assert not history[2].has_loss


def test_nonfinite_named_values_follow_the_nonfinite_policy(daemon):
    with entrowatch.Monitor(daemon.grpc_address, run_id="named-nonfinite", rank=0,
                            world_size=1) as mon:
        sent = capture_wire(mon)
        mon.log_scalars(0, loss=1.0, reward=float("nan"), kl=0.5)
        mon.log_metrics(1, {"critic/rewards/mean": torch.tensor(float("inf")), "kl": 0.5})
        assert mon.flush(20)
        assert mon.stats.rejected == 0
        assert mon.dropped.scalars_nonfinite == 2
    assert [dict(r.scalars.values) for r in sent] == [{"kl": 0.5}, {"kl": 0.5}]


@pytest.mark.parametrize("call, error, message", [
    (lambda m: m.log_scalars(0, reward="0.5"), TypeError, "log_scalars: reward must be a number"),
    (lambda m: m.log_scalars(0, kl=True), TypeError, "log_scalars: kl must be a number"),
    (lambda m: m.log_scalars(0, reward=torch.ones(2)), ValueError,
     r"log_scalars: reward must be a scalar, got a tensor of shape \(2,\)"),
    (lambda m: m.log_scalars(0, reward=np.ones((2, 2))), ValueError,
     r"log_scalars: reward must be a scalar, got an array of shape \(2, 2\)"),
    (lambda m: m.log_scalars(0, lr=-1.0), ValueError, "log_scalars: lr must be >= 0"),
    (lambda m: m.log_metrics(0, [("reward", 1.0)]), TypeError,
     "metrics must be a dict of name -> number, got list"),
    (lambda m: m.log_metrics(0, {"train loss": 1.0}), ValueError,
     "scalar name 'train loss' is not 1-128 characters"),
    (lambda m: m.log_metrics(0, {"x" * 129: 1.0}), ValueError, "is not 1-128 characters"),
    (lambda m: m.log_metrics(0, {"reward\n": 1.0}), ValueError, "is not 1-128 characters"),
    (lambda m: m.log_scalars(0, **{"": 1.0}), ValueError, "scalar name '' is not"),
    (lambda m: m.log_metrics(0, {3: 1.0}), TypeError, "metric names must be strings, got 3"),
    (lambda m: m.log_metrics(0, {"actor/entropy": [1.0, 2.0]}), TypeError,
     "log_metrics: entropy must be a number"),
    (lambda m: m.log_metrics(0, {"reward": 1.0, "critic/rewards/mean": 1.0}), ValueError,
     "'reward' and 'critic/rewards/mean' both map to 'reward'"),
    (lambda m: m.log_metrics(-1, {"reward": 1.0}), ValueError, "step"),
])
def test_bad_arguments_raise_at_the_call_site(daemon, call, error, message):
    with entrowatch.Monitor(daemon.grpc_address, run_id="named-bad", rank=0,
                            world_size=1) as mon:
        with pytest.raises(error, match=message):
            call(mon)
        # Nothing of a refused call is sent.
        assert mon.flush(20)
        assert mon.stats.enqueued == 0


def test_none_values_are_skipped(daemon):
    with entrowatch.Monitor(daemon.grpc_address, run_id="named-none", rank=0,
                            world_size=1) as mon:
        sent = capture_wire(mon)
        mon.log_metrics(0, {"reward": None, "kl": 0.5})
        mon.log_scalars(0, reward=None, entropy=1.5)
        mon.log_metrics(1, {"reward": None})  # nothing left: no report for step 1
        assert mon.flush(20)
    assert len(sent) == 1 and dict(sent[0].scalars.values) == {"kl": 0.5, "entropy": 1.5}


def test_metric_names_map_to_known_fields():
    # Every mapping target is a field or one of the canonical RL names.
    assert set(entrowatch.METRIC_NAMES.values()) == {
        "loss", "lr", "grad_norm", "reward", "kl", "entropy", "clip_fraction", "response_length"}
    assert "actor/ppo_kl" not in entrowatch.METRIC_NAMES
