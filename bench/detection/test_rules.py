"""Unit tests of the reference rules on small synthetic series."""

import json
import math
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import rules  # noqa: E402


def fire(rule, values):
    return [i for i, v in enumerate(values) if rule.observe(v)]


def test_kill_loss_spike_needs_a_full_window_and_five_outliers():
    assert fire(rules.KillLossSpike(), [1.0] * 99 + [50.0]) == []
    # The window mean includes the outliers themselves: 3.0 stays >= 2x it.
    assert fire(rules.KillLossSpike(), [1.0] * 100 + [3.0] * 6) == [104, 105]
    # Four outliers, one normal loss, four more: the count resets, no alarm.
    assert fire(rules.KillLossSpike(), [1.0] * 100 + [3.0] * 4 + [1.0] + [3.0] * 4) == []


def test_kill_loss_spike_outlier_is_at_or_above_the_multiple():
    # Exactly 2x the window mean counts (>=), just below does not.
    rule = rules.KillLossSpike(window_size=2, patience=0)
    assert fire(rule, [1.0, 1.0, 2.0]) == [2]
    rule = rules.KillLossSpike(window_size=2, patience=0)
    assert fire(rule, [1.0, 1.0, 1.999]) == []


def test_lightning_rtol_two_means_three_times_the_running_mean():
    assert fire(rules.LightningSpikeDetection(), [1.0] * 10 + [2.9]) == []
    assert fire(rules.LightningSpikeDetection(), [1.0] * 10 + [3.1]) == [10]


def test_lightning_spikes_stay_out_of_the_statistics():
    # Both 3.5 are spikes: the first never entered the mean nor last_val.
    assert fire(rules.LightningSpikeDetection(), [1.0] * 10 + [3.5, 3.5]) == [10, 11]


def test_lightning_improvement_and_warmup_and_non_finite():
    rule = rules.LightningSpikeDetection()
    # Batch 0 is never judged (warmup 1); a falling loss is never a spike.
    assert fire(rule, [100.0, 50.0, 10.0, 1.0]) == []
    assert rules.LightningSpikeDetection().observe(1.0) is False
    rule = rules.LightningSpikeDetection()
    assert fire(rule, [1.0, 1.0, math.nan, 1.0, math.inf]) == [2, 4]


def test_lightning_window_is_the_last_ten_accepted_losses():
    rule = rules.LightningSpikeDetection()
    values = [100.0] * 5 + [1.0] * 10 + [3.5]
    # 100.0 is a spike only against a small mean; after ten 1.0 values the
    # mean is 1.0 and 3.5 is a spike.
    assert fire(rule, values)[-1] == 15


def test_zclip_z_score_after_warmup():
    warm = [1.0, 1.2] * 12 + [1.0]  # 25 values: mean 1.096, population std
    mean = sum(warm) / 25
    std = math.sqrt(sum((x - mean) ** 2 for x in warm) / 25)
    rule = rules.ZClip()
    assert fire(rule, warm) == []
    below = mean + 2.4 * std
    assert rule.observe(below) is False
    rule = rules.ZClip()
    fire(rule, warm)
    assert rule.observe(mean + 2.6 * std) is True


def test_zclip_updates_the_ema_with_the_clipped_value():
    warm = [1.0, 1.2] * 12 + [1.0]
    rule = rules.ZClip()
    fire(rule, warm)
    mean, std = rule.mean, rule.var ** 0.5
    g = 10.0
    z = (g - mean) / (std + 1e-6)
    clipped = mean + (2.5 * std) / (z / 2.5)
    assert rule.observe(g) is True
    expected_mean = 0.97 * mean + 0.03 * clipped
    assert rule.mean == pytest.approx(expected_mean, rel=1e-12)
    assert rule.var == pytest.approx(0.97 * std ** 2 + 0.03 * (clipped - expected_mean) ** 2,
                                     rel=1e-12)


def test_megatron_ten_times_the_max_of_the_first_hundred():
    rule = rules.MegatronSpikyLoss()
    assert fire(rule, [2.0] * 99 + [-3.0]) == []  # |loss|: the max is 3.0
    assert rule.observe(29.9) is False
    assert rule.observe(30.0) is True
    assert rule.observe(math.nan) is False


def test_rlwatch_entropy_warns_after_25_steps_below_one_nat():
    rule = rules.RlwatchEntropyCollapse()
    alarms = fire(rule, [0.5] * 60)
    # Steps are judged from the 20th (index 19): the 25th below is index 43.
    assert alarms[0] == 43
    assert alarms == list(range(43, 60))
    rule = rules.RlwatchEntropyCollapse()
    # Judged from index 19: 21 below, a reset at 1.0, then 20 below: never 25.
    assert fire(rule, [0.5] * 40 + [1.0] + [0.5] * 20) == []


def test_rlwatch_grad_norm_freezes_its_baseline_at_100_values():
    values = [1.0, 1.2] * 50  # frozen at the 100th: mean 1.1, std 0.1
    rule = rules.RlwatchGradNormSpike()
    assert fire(rule, values) == []
    assert rule.observe(1.1 + 2.9 * 0.1) is False
    assert rule.observe(1.1 + 3.1 * 0.1) is True
    # Frozen: a sustained rise keeps firing, the baseline does not learn it.
    assert fire(rule, [5.0] * 50) == list(range(50))


def test_rlwatch_grad_norm_rolling_before_the_freeze_and_warmup():
    rule = rules.RlwatchGradNormSpike()
    # Not judged before the 20th value, however large.
    assert fire(rule, [1.0] * 10 + [100.0] + [1.0] * 8) == []
    rule = rules.RlwatchGradNormSpike()
    values = [1.0, 1.2] * 15  # 30 values, rolling baseline of the previous ones
    assert fire(rule, values + [5.0]) == [30]


def test_alarm_steps_runs_loss_rules_per_rank(tmp_path):
    path = tmp_path / "t.jsonl"
    lines = []
    for step in range(20):
        for rank in range(2):
            loss = 10.0 if (rank == 1 and step == 15) else 1.0
            lines.append(json.dumps({
                "runId": "t", "rank": rank, "worldSize": 2, "step": str(step),
                "tokenEntropies": [{"values": [2.0, 4.0]}],
                "grad": {"globalNorm": 1.0}, "scalars": {"loss": loss}}))
    path.write_text("\n".join(lines) + "\n")
    steps = rules.load_steps(str(path))
    assert [s["step"] for s in steps] == list(range(20))
    assert steps[15]["loss"] == {0: 1.0, 1: 10.0}
    assert steps[0]["entropy"] == pytest.approx(3.0)
    assert rules.alarm_steps(rules.LightningSpikeDetection, "loss", steps) == [15]
    assert rules.alarm_steps(rules.ZClip, "grad_norm", steps) == []


def test_episodes_counts_runs_of_consecutive_steps():
    assert rules.episodes([]) == 0
    assert rules.episodes([3, 4, 5, 9, 20, 21]) == 3
