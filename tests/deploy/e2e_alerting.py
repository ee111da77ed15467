#!/usr/bin/python3
"""End-to-end alerting with the real servers, all on 127.0.0.1 free ports.

  --mode prometheus: entrowatchd, Prometheus (1 s scrape and evaluation, the
      rules of deploy/prometheus with every `for:` cut to 1 s) and
      Alertmanager. A collapse trace is replayed with `entrowatch replay`; the
      EntrowatchEntropyCollapse alert for the run must reach Alertmanager
      (queried through /api/v2/alerts), then resolve once a recovery trace is
      replayed. Afterwards every dashboard panel's PromQL must return data.
  --mode direct: entrowatchd pushes to Alertmanager itself (the
      `alertmanager:` config section); same collapse / recovery assertions.

The traces are generated here (JSONL, the protobuf JSON mapping of Report):
a healthy warm-up, a collapse to near-zero token entropy, then recovery.
Every wait polls a condition with a deadline; every process is stopped by
its PID. Exit status 0 on success, 1 on failure, 77 (SKIPPED) when a binary
it needs is missing or the daemon has no direct-push support.
"""

import argparse
import base64
import json
import os
import random
import re
import struct
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import check_dashboards  # noqa: E402
import servers  # noqa: E402

REPO = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
RULES = os.path.join(REPO, "deploy", "prometheus", "entrowatch.rules.yml")
SKIP = 77
RUN = "e2e-collapse"
ALERT = "EntrowatchEntropyCollapse"
VOCAB = 4096
WARMUP_STEPS = 60  # above the default analysis.baseline.warmup_steps (50)
COLLAPSE_STEPS = 20
RECOVERY_STEPS = 30

ALERTMANAGER_CONFIG = """\
route:
  receiver: sink
  group_wait: 1s
  group_interval: 1s
receivers:
  - name: sink
"""


def report(rng, step, seq, entropy_mean, phase="TRAIN"):
    """One Report in the protobuf JSON mapping: client token entropies (half
    of them generated tokens), a small logits block, attention head
    entropies, grad norm, loss and learning rate."""
    n = 64
    values = [max(0.0, rng.gauss(entropy_mean, 0.1 * entropy_mean + 0.001)) for _ in range(n)]
    logits = [rng.gauss(0, 2) for _ in range(2 * 32)]
    return {
        "runId": RUN, "rank": 0, "worldSize": 1, "step": str(step), "seq": str(seq),
        "phase": phase,
        "tokenEntropies": [{"values": [round(v, 5) for v in values], "vocabSize": VOCAB,
                            "tokenKinds": ["PROMPT", "GENERATED"] * (n // 2)}],
        "logits": [{"logits": {"dtype": "FLOAT32", "shape": ["2", "32"],
                               "data": base64.b64encode(struct.pack("<64f", *logits)).decode()}}],
        "attentionEntropies": [
            {"layer": layer, "headEntropy": [round(1.0 + 0.5 * layer + 0.3 * h + rng.gauss(0, 0.05), 4)
                                             for h in range(4)]}
            for layer in range(3)],
        "grad": {"globalNorm": round(rng.lognormvariate(0, 0.1), 5)},
        "scalars": {"loss": round(2.0 + rng.gauss(0, 0.02), 5), "learningRate": 3e-4},
    }


def write_traces(workdir):
    """collapse.jsonl: warm-up at ~4 nats (normalized ~0.48), then ~0.005 nats
    (normalized ~0.0006, below the 0.05 collapse floor). recovery.jsonl: back
    at ~4 nats."""
    rng = random.Random(7)
    collapse = os.path.join(workdir, "collapse.jsonl")
    recovery = os.path.join(workdir, "recovery.jsonl")
    seq = 0
    with open(collapse, "w") as f:
        for step in range(1, WARMUP_STEPS + COLLAPSE_STEPS + 1):
            seq += 1
            mean = 4.0 if step <= WARMUP_STEPS else 0.005
            f.write(json.dumps(report(rng, step, seq, mean)) + "\n")
    with open(recovery, "w") as f:
        first = WARMUP_STEPS + COLLAPSE_STEPS + 1
        for step in range(first, first + RECOVERY_STEPS):
            seq += 1
            f.write(json.dumps(report(rng, step, seq, 4.0)) + "\n")
    return collapse, recovery


def shortened_rules(workdir):
    with open(RULES) as f:
        text = f.read()
    text, n = re.subn(r"^(\s+for:\s*)\S+$", r"\g<1>1s", text, flags=re.M)
    if n == 0:
        raise AssertionError("no `for:` found in the rules")
    path = os.path.join(workdir, "rules.yml")
    with open(path, "w") as f:
        f.write(text)
    return path


def daemon_config(mode, am_url):
    text = """\
grpc:
  listen: "127.0.0.1:0"
metrics:
  listen: "127.0.0.1:0"
  per_head_series: true
aggregation:
  step_timeout_seconds: 5
log:
  level: warn
"""
    if mode == "direct":
        text += f"""\
alertmanager:
  enabled: true
  url: "{am_url}"
  resend_interval_seconds: 1
  retry_initial_backoff_seconds: 0.2
  retry_max_backoff_seconds: 1
"""
    return text


def alerts_of(am_url, run, alertname):
    return [a for a in servers.http_json(f"{am_url}/api/v2/alerts")
            if a["labels"].get("run") == run and a["labels"].get("alertname") == alertname
            and a["status"]["state"] == "active"]


def replay(cli, grpc_address, trace):
    started = time.monotonic()
    r = subprocess.run([cli, "replay", trace, "--addr", grpc_address, "--timeout", "60"],
                       capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        raise AssertionError(f"entrowatch replay {os.path.basename(trace)} exited {r.returncode}:\n"
                             f"{r.stdout[-2000:]}\n{r.stderr[-2000:]}")
    return time.monotonic() - started


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entrowatchd", required=True)
    parser.add_argument("--cli", required=True)
    parser.add_argument("--mode", choices=["prometheus", "direct"], default="prometheus")
    parser.add_argument("--timeout", type=float, default=90,
                        help="seconds allowed for the alert to fire, and again to resolve")
    args = parser.parse_args()
    args.entrowatchd = os.path.abspath(args.entrowatchd)
    args.cli = os.path.abspath(args.cli)

    needed = [args.entrowatchd, args.cli, servers.ALERTMANAGER]
    if args.mode == "prometheus":
        needed.append(servers.PROMETHEUS)
    missing = [p for p in needed if not os.access(p, os.X_OK)]
    if missing:
        print(f"SKIPPED: not built or not installed: {', '.join(missing)}")
        return SKIP

    processes = []
    work = tempfile.TemporaryDirectory(prefix=f"ew-e2e-{args.mode}-")
    workdir = work.name
    ok = failed = False
    try:
        am, am_url = servers.start_alertmanager(workdir, ALERTMANAGER_CONFIG)
        processes.append(am)

        config = os.path.join(workdir, "entrowatch.yaml")
        with open(config, "w") as f:
            f.write(daemon_config(args.mode, am_url))
        if args.mode == "direct":
            check = subprocess.run([args.cli, "check-config", config], capture_output=True,
                                   text=True, timeout=30)
            if check.returncode != 0 and "alertmanager" in (check.stdout + check.stderr):
                print("SKIPPED: this entrowatchd has no `alertmanager:` config section yet "
                      f"(direct push not wired): {(check.stdout + check.stderr).strip()}")
                return SKIP
        ready_file = os.path.join(workdir, "ready.json")
        daemon = servers.Process("entrowatchd", [args.entrowatchd, "--config", config,
                                                 "--ready-file", ready_file], workdir)
        processes.append(daemon)

        def daemon_ready():
            if not daemon.alive():
                raise AssertionError(f"entrowatchd exited:\n{daemon.log_tail()}")
            if os.path.exists(ready_file) and os.path.getsize(ready_file) > 0:
                with open(ready_file) as f:
                    return json.load(f)
            return None
        ready = servers.wait_for(daemon_ready, 30, "entrowatchd ready file")
        print(f"entrowatchd pid {daemon.pid}: grpc {ready['grpc_address']}, "
              f"metrics {ready['metrics_address']}; alertmanager pid {am.pid}: {am_url}")

        prom_url = None
        if args.mode == "prometheus":
            rules = shortened_rules(workdir)
            am_target = am_url.replace("http://", "")
            prometheus, prom_url = servers.start_prometheus(workdir, f"""\
global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files: ["{rules}"]
alerting:
  alertmanagers:
    - static_configs:
        - targets: ["{am_target}"]
scrape_configs:
  - job_name: entrowatch
    static_configs:
      - targets: ["{ready['metrics_address']}"]
""")
            processes.append(prometheus)
            servers.wait_for(lambda: servers.prom_query(prom_url, 'up{job="entrowatch"} == 1'),
                             30, "Prometheus scraping entrowatchd")
            print(f"prometheus pid {prometheus.pid}: {prom_url}")

        collapse, recovery = write_traces(workdir)
        took = replay(args.cli, ready["grpc_address"], collapse)
        print(f"replayed collapse trace ({WARMUP_STEPS}+{COLLAPSE_STEPS} steps) in {took:.1f}s")
        t0 = time.monotonic()
        firing = servers.wait_for(lambda: alerts_of(am_url, RUN, ALERT), args.timeout,
                                  f"{ALERT} for run {RUN} in Alertmanager")
        print(f"{ALERT} active in Alertmanager after {time.monotonic() - t0:.1f}s: "
              f"labels {json.dumps(firing[0]['labels'], sort_keys=True)}")
        annotations = firing[0]["annotations"]
        for key in ("summary", "description", "runbook_url"):
            if not annotations.get(key):
                raise AssertionError(f"alert has no {key} annotation: {annotations}")
        if firing[0]["labels"].get("severity") != "critical":
            raise AssertionError(f"unexpected severity: {firing[0]['labels']}")

        took = replay(args.cli, ready["grpc_address"], recovery)
        print(f"replayed recovery trace ({RECOVERY_STEPS} steps) in {took:.1f}s")
        t0 = time.monotonic()
        servers.wait_for(lambda: not alerts_of(am_url, RUN, ALERT), args.timeout,
                         f"{ALERT} for run {RUN} to resolve")
        print(f"{ALERT} resolved in Alertmanager after {time.monotonic() - t0:.1f}s")

        if prom_url:
            dashboards = check_dashboards.main([
                "--prometheus", prom_url, "--require-data", "--run", RUN,
                "--range-seconds", "600", "--rate-interval", "15s", "--step", "2"])
            if dashboards != 0:
                raise AssertionError("some dashboard queries returned no data (above)")
        ok = True
    except (AssertionError, TimeoutError, OSError, ValueError) as e:
        failed = True
        print(f"FAILED: {e}")
    finally:
        # Stop everything before printing anything: printing can fail too.
        tails = [(p, p.stop(), p.log_tail()) for p in reversed(processes)]
        work.cleanup()
        if failed:
            for p, rc, tail in tails:
                print(f"--- {p.name} (pid {p.pid}, exit {rc}) log tail:\n{tail}")
    print("PASSED" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
