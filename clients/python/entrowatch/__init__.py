"""entrowatch: stream training-health signals to entrowatchd.

    import entrowatch
    with entrowatch.Monitor("127.0.0.1:50551", run_id="my-run") as mon:
        for step in range(steps):
            ...
            mon.log_logits(step, logits)
            mon.log_scalars(step, loss=loss, lr=lr)

PyTorch hooks live in entrowatch.torch (imported on demand, so numpy-only
users never import torch).
"""

from entrowatch.monitor import (DEFAULT_ADDRESS, GENERATED, METRIC_NAMES, PROMPT, Anomaly, Monitor,
                                Verdict)

__all__ = [
    "Monitor", "Verdict", "Anomaly", "PROMPT", "GENERATED", "DEFAULT_ADDRESS", "METRIC_NAMES",
]
__version__ = "0.1.0"
