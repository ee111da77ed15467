"""Unit tests of the acceptance logic of side_by_side.py (no daemon)."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import side_by_side  # noqa: E402


def steps_with_grad_shock(n, shock_at):
    """Flat loss and grad norm, a grad-norm shock (which ZClip and rlwatch see) at shock_at."""
    return [{"step": s, "loss": {0: 2.0},
             "grad_norm": 10.0 if s == shock_at else 1.0 + 0.01 * (s % 3), "entropy": 2.0}
            for s in range(n)]


def timeline(n, alarms=(), states=(), severity="INFO"):
    out = {}
    for s in range(n):
        anomalies = [("GRAD_NORM_SPIKE", severity, "grad")] if s in alarms else []
        out[s] = ("PANIC_ZONE" if s in states else "NORMAL", anomalies)
    return out


def test_pathological_entrowatch_must_not_be_later_than_the_best_rule():
    steps = steps_with_grad_shock(150, 120)
    meta = {"onset_step": 120}
    late = side_by_side.analyse("t", meta, timeline(150, alarms={123}), steps)
    assert late["best"] == 120 and not late["ok"] and "123 > best rule 120" in late["why"]
    tie = side_by_side.analyse("t", meta, timeline(150, alarms={120}), steps)
    assert tie["ok"] and tie["ew_first"] == "120"


def test_pathological_alarm_counts_info_and_states_and_needs_an_alarm():
    steps = steps_with_grad_shock(150, 120)
    meta = {"onset_step": 120}
    by_state = side_by_side.analyse("t", meta, timeline(150, states={119, 120}), steps)
    assert by_state["ok"] and by_state["ew_first"] == "120 (+1 before)"
    assert by_state["ew_page"] == "-" and by_state["ew_state"] == "120 (+1 before)"
    silent = side_by_side.analyse("t", meta, timeline(150), steps)
    assert not silent["ok"] and "never alarms" in silent["why"]


def test_healthy_allows_info_but_no_page_and_no_state_after_warmup():
    steps = steps_with_grad_shock(150, 120)
    meta = {"healthy": True, "warmup_steps": 50}
    info = side_by_side.analyse("h", meta, timeline(150, alarms={120, 121}), steps)
    assert info["ok"] and info["entrowatch"].startswith("info 1, warning 0, critical 0")
    page = side_by_side.analyse("h", meta, timeline(150, alarms={120}, severity="WARNING"), steps)
    assert not page["ok"] and "paging anomaly at [120]" in page["why"]
    early_state = side_by_side.analyse("h", meta, timeline(150, states={10}), steps)
    assert early_state["ok"]
    late_state = side_by_side.analyse("h", meta, timeline(150, states={60}), steps)
    assert not late_state["ok"] and "state at steps [60]" in late_state["why"]
    # The rules' alarms are counted as episodes (and steps) on healthy traces.
    assert info["rules"]["ZClip"] == "1 (1 steps)"
