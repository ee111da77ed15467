"""Keeps the load generator working: ~2 s of N=4 streams against a real
entrowatchd, and 1 s against the null sink; every report sent must get an
OK Ack, no stream may fail, and the daemon's /proc figures must be read.

Run by ctest (label integration); not the benchmark itself (run_load.sh)."""

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time

READY_TIMEOUT_S = 30
STOP_TIMEOUT_S = 15


def wait_ready(proc, path):
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited early with code {proc.returncode}")
        if os.path.exists(path):
            with open(path) as f:
                return json.load(f)
        time.sleep(0.05)
    raise RuntimeError(f"no ready file {path} after {READY_TIMEOUT_S} s")


def stop(proc):
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()


def run_load(load, ready_file, label, streams, duration, verify_runs=False):
    cmd = [load, "--ready-file", ready_file, "--streams", str(streams), "--ranks-per-run", "2",
           "--duration", str(duration), "--warmup", "0.2", "--drain", "20", "--logits-rows", "16",
           "--label", label, "--json", "--require-all-acked"]
    if verify_runs:
        cmd.append("--verify-runs")
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    sys.stdout.write(out.stdout)
    sys.stderr.write(out.stderr)
    if out.returncode != 0:
        raise AssertionError(f"{label}: entrowatch_load exited {out.returncode}")
    return json.loads(out.stdout)


def check(result, label):
    failures = []
    if result["sent"] <= 0:
        failures.append("nothing was sent")
    if result["acked"] != result["sent"] or result["ok"] != result["sent"]:
        failures.append(f"sent {result['sent']}, acked {result['acked']}, ok {result['ok']}")
    if result["ack_errors"] or result["streams_failed"] or result["unmatched"]:
        failures.append(f"errors {result['ack_errors']}, streams failed "
                        f"{result['streams_failed']}, unmatched {result['unmatched']}")
    if result["logits_acked"] <= 0:
        failures.append("no report with a logits block was acknowledged")
    if result["reports_per_s"] <= 0 or result["p99_ms"] < result["p50_ms"]:
        failures.append(f"implausible figures: {result}")
    if result["server_rss_end_mib"] <= 0 or result["server_cpu_s"] <= 0:
        failures.append("the server's /proc figures were not read")
    if failures:
        raise AssertionError(f"{label}: " + "; ".join(failures))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--load", required=True)
    parser.add_argument("--daemon", required=True)
    parser.add_argument("--sink", required=True)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="load_smoke_") as tmp:
        config = os.path.join(tmp, "entrowatch.yaml")
        with open(config, "w") as f:
            f.write('grpc: {listen: "127.0.0.1:0"}\n'
                    'metrics: {listen: "127.0.0.1:0"}\n'
                    'compute: {backend: cpu}\n'
                    'log: {level: warn}\n')
        daemon_ready = os.path.join(tmp, "daemon.ready")
        sink_ready = os.path.join(tmp, "sink.ready")
        daemon = subprocess.Popen([args.daemon, "--config", config, "--ready-file", daemon_ready])
        sink = subprocess.Popen([args.sink, "--ready-file", sink_ready, "--max-seconds", "120"])
        try:
            wait_ready(daemon, daemon_ready)
            wait_ready(sink, sink_ready)
            daemon_result = run_load(args.load, daemon_ready, "entrowatchd", 4, 2.0, verify_runs=True)
            check(daemon_result, "entrowatchd")
            # 4 streams, 2 ranks per run: the daemon holds what it acknowledged.
            if daemon_result["runs_verified"] != 2 or daemon_result["acked_missing"] != 0:
                raise AssertionError(f"entrowatchd: GetRun check {daemon_result}")
            check(run_load(args.load, sink_ready, "null-sink", 4, 1.0), "null-sink")
        finally:
            stop(sink)
            stop(daemon)
        if daemon.returncode != 0:
            raise AssertionError(f"entrowatchd exited {daemon.returncode} after SIGTERM")
    print("load smoke test passed")


if __name__ == "__main__":
    main()
