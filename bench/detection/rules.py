"""The established training-health rules, as references for entrowatch.

Each rule is re-implemented from its project's source (cited per class) with
that project's defaults, and judged on the same per-step figures entrowatch
receives. A rule sees one step at a time through observe() and answers
whether it raises an alarm at that step; a rule that would stop the run
(Lightning, llm-foundry with log_only=False) is modelled as raising the alarm
and carrying on, so later alarms can be counted too.

Loss rules run on every rank's own loss (Lightning and llm-foundry run per
rank; Megatron validates each rank's local loss) and fire when any rank
fires; grad-norm rules see the global norm; rlwatch's entropy rule sees the
step's mean token entropy (what trainers log as policy entropy).
"""

import collections
import json
import math


class KillLossSpike:
    """llm-foundry KillLossSpike (llmfoundry/callbacks/kill_loss_spike_callback.py).

    Keeps a deque of the last window_size (100) losses; nothing is judged until
    it is full. A loss >= outlier_multiplier (2) x the window mean counts as an
    outlier; more than `patience` (4) consecutive outliers, i.e. the 5th, is a
    loss spike. A non-outlier resets the count. Every loss, outlier or not,
    enters the window. (Its second check, half the window above loss_cap 10
    after 2 x window_size steps, never triggers on these runs: losses are < 10.)
    """

    name = "llm-foundry KillLossSpike"

    def __init__(self, window_size=100, outlier_multiplier=2.0, patience=4, loss_cap=10.0):
        self.window = collections.deque(maxlen=window_size)
        self.window_size = window_size
        self.multiplier = outlier_multiplier
        self.patience = patience
        self.loss_cap = loss_cap
        self.outliers = 0
        self.batches = 0

    def observe(self, loss):
        alarm = False
        if len(self.window) == self.window_size:
            mean = sum(self.window) / len(self.window)
            if loss >= mean * self.multiplier:
                self.outliers += 1
                alarm = self.outliers > self.patience
            else:
                self.outliers = 0
                alarm = (self.batches >= 2 * self.window_size and
                         sum(1 for v in self.window if v > self.loss_cap) >= self.window_size / 2)
        self.window.append(loss)
        self.batches += 1
        return alarm


class LightningSpikeDetection:
    """PyTorch Lightning SpikeDetection (lightning/fabric/utilities/spike.py).

    Defaults mode="min", window=10, warmup=1, atol=None, rtol=2.0,
    finite_only=True. From batch `warmup` on, a batch is a spike when its loss
    is non-finite, or when it is not an improvement over the last accepted
    loss (mode "min": loss - last_val > 0) and |loss - running mean| >=
    rtol x running mean (atol None: no absolute test). With rtol 2 a loss
    above its mean must reach 3x the mean of the last 10 accepted losses, not
    2x. A spike raises TrainingSpikeException before the statistics are
    updated, so spikes never enter the running mean nor last_val.
    """

    name = "Lightning SpikeDetection"

    def __init__(self, window=10, warmup=1, atol=None, rtol=2.0, mode="min", finite_only=True):
        self.values = collections.deque(maxlen=window)
        self.warmup = warmup
        self.atol = atol
        self.rtol = rtol
        self.mode = mode
        self.finite_only = finite_only
        self.last = 0.0
        self.batch = 0

    def _is_spike(self, loss):
        if self.finite_only and not math.isfinite(loss):
            return True
        diff = loss - self.last
        if (diff <= 0) if self.mode == "min" else (diff >= 0):
            return False
        running = sum(self.values) / len(self.values) if self.values else 0.0
        atol_ok = self.atol is None or abs(loss - running) >= abs(self.atol)
        rtol_ok = self.rtol is None or abs(loss - running) >= abs(self.rtol * running)
        return atol_ok and rtol_ok

    def observe(self, loss):
        spike = self.batch >= self.warmup and self._is_spike(loss)
        self.batch += 1
        if not spike and (self.finite_only or math.isfinite(loss)):
            self.values.append(loss)
            self.last = loss
        return spike


class ZClip:
    """ZClip z-score mode (bluorion-com/ZClip, zclip/zclip.py).

    alpha 0.97, z_thresh 2.5, warmup_steps 25, eps 1e-6, clip_option
    "adaptive_scaling". The first 25 norms initialise the EMA mean and
    (population) variance; afterwards z = (g - mean) / (std + eps), and z >
    z_thresh is a spike that gets clipped to mean + z_thresh x std / (z /
    z_thresh). The EMA is then updated with the clipped value (or the norm
    itself): mean first, then var with the updated mean, as the source does.
    """

    name = "ZClip"

    def __init__(self, alpha=0.97, z_thresh=2.5, warmup_steps=25, eps=1e-6):
        self.alpha = alpha
        self.z_thresh = z_thresh
        self.warmup_steps = warmup_steps
        self.eps = eps
        self.buffer = []
        self.mean = None
        self.var = None

    def observe(self, grad_norm):
        if self.mean is None:
            self.buffer.append(grad_norm)
            if len(self.buffer) >= self.warmup_steps:
                self.mean = sum(self.buffer) / len(self.buffer)
                self.var = sum((x - self.mean) ** 2 for x in self.buffer) / len(self.buffer)
            return False
        std = self.var ** 0.5
        z = (grad_norm - self.mean) / (std + self.eps)
        spike = z > self.z_thresh
        value = grad_norm
        if spike:
            value = self.mean + (self.z_thresh * std) / (z / self.z_thresh)
        self.mean = self.alpha * self.mean + (1 - self.alpha) * value
        self.var = self.alpha * self.var + (1 - self.alpha) * (value - self.mean) ** 2
        return spike


class MegatronSpikyLoss:
    """Megatron-LM's spiky-loss check (megatron/core/rerun_state_machine.py,
    RerunStateMachine.is_unexpectedly_large with threshold 10, context "loss").

    The first num_samples (100) |loss| values only set the maximum; afterwards
    a loss >= 10 x that maximum is rejected as spiky. NaN/Inf are ignored here
    (Megatron checks them separately).
    """

    name = "Megatron spiky loss"

    def __init__(self, threshold=10.0, num_samples=100):
        self.threshold = threshold
        self.num_samples = num_samples
        self.count = 0
        self.max_value = 0.0

    def observe(self, loss):
        value = abs(loss)
        if math.isnan(value) or math.isinf(value):
            return False
        if self.count < self.num_samples:
            self.count += 1
            self.max_value = max(self.max_value, value)
            return False
        return value >= self.max_value * self.threshold


class RlwatchEntropyCollapse:
    """rlwatch EntropyCollapseDetector (varun1724/rlwatch, src/rlwatch/detectors.py,
    defaults in config.py: threshold 1.0 nat, consecutive_steps 50,
    warmup_steps 20).

    Nothing is judged while fewer than 20 steps were seen. Each step with
    entropy < 1.0 extends a run of consecutive steps; one at or above resets
    it. rlwatch warns once the run reaches consecutive_steps // 2 (25) and
    raises its critical alert at 50; the first alert (the warning) is the
    alarm here, and an alarm stays up while the run lasts.
    """

    name = "rlwatch entropy"

    def __init__(self, threshold=1.0, consecutive_steps=50, warmup_steps=20):
        self.threshold = threshold
        self.warn_after = max(1, consecutive_steps // 2)
        self.warmup_steps = warmup_steps
        self.steps = 0
        self.below = 0

    def observe(self, entropy):
        self.steps += 1
        if self.steps < self.warmup_steps:
            return False
        if entropy < self.threshold:
            self.below += 1
        else:
            self.below = 0
        return self.below >= self.warn_after


class RlwatchGradNormSpike:
    """rlwatch GradientNormSpikeDetector (same files; sigma_multiplier 3.0,
    rolling_window 100, warmup_steps 20, baseline_mode "frozen").

    From the 20th step (and 10 values), z = (g - mean) / std > 3 is a warning
    (> 4.5 critical). Until 100 values were seen the baseline is the mean and
    population std of the previous values in the window; at the 100th value
    it freezes to the mean/std of those 100 values for the rest of the run.
    """

    name = "rlwatch grad norm"

    def __init__(self, sigma=3.0, window=100, warmup_steps=20):
        self.sigma = sigma
        self.window = window
        self.warmup_steps = warmup_steps
        self.history = collections.deque(maxlen=window)
        self.steps = 0
        self.frozen = None

    def observe(self, grad_norm):
        self.steps += 1
        self.history.append(grad_norm)
        if self.steps < self.warmup_steps or len(self.history) < 10:
            return False
        if self.frozen is None and len(self.history) >= self.window:
            self.frozen = _mean_std(list(self.history))
        mean, std = self.frozen if self.frozen else _mean_std(list(self.history)[:-1])
        std = max(std, 1e-8)
        return (grad_norm - mean) / std > self.sigma


def _mean_std(values):
    mean = sum(values) / len(values)
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))


# (rule class, input): "loss" runs one instance per rank on that rank's loss.
RULES = [
    (KillLossSpike, "loss"),
    (LightningSpikeDetection, "loss"),
    (ZClip, "grad_norm"),
    (MegatronSpikyLoss, "loss"),
    (RlwatchEntropyCollapse, "entropy"),
    (RlwatchGradNormSpike, "grad_norm"),
]


def load_steps(path):
    """Per-step figures of a JSONL trace: {step: {"loss": {rank: v},
    "grad_norm": v, "entropy": mean token entropy over ranks}} in step order."""
    steps = collections.OrderedDict()
    with open(path, encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            report = json.loads(line)
            step = int(report.get("step", 0))
            rank = int(report.get("rank", 0))
            entry = steps.setdefault(step, {"loss": {}, "grad_norm": None, "tokens": []})
            scalars = report.get("scalars")
            if scalars is not None and "loss" in scalars:
                entry["loss"][rank] = float(scalars["loss"])
            grad = report.get("grad")
            if grad is not None and "globalNorm" in grad:
                entry["grad_norm"] = float(grad["globalNorm"])
            for block in report.get("tokenEntropies", []):
                entry["tokens"].extend(float(v) for v in block.get("values", []))
    out = []
    for step in sorted(steps):
        entry = steps[step]
        tokens = entry.pop("tokens")
        entry["entropy"] = sum(tokens) / len(tokens) if tokens else None
        entry["step"] = step
        out.append(entry)
    return out


def alarm_steps(rule_class, signal, steps):
    """The steps at which rule_class raises an alarm on this trace."""
    per_rank = {}
    single = rule_class()
    alarms = []
    for entry in steps:
        if signal == "loss":
            fired = False
            for rank, loss in sorted(entry["loss"].items()):
                rule = per_rank.setdefault(rank, rule_class())
                fired = rule.observe(loss) or fired
        else:
            value = entry[signal]
            fired = value is not None and single.observe(value)
        if fired:
            alarms.append(entry["step"])
    return alarms


def episodes(alarms):
    """Number of separate alarm episodes (runs of consecutive alarm steps)."""
    count = 0
    previous = None
    for step in alarms:
        if previous is None or step != previous + 1:
            count += 1
        previous = step
    return count
