#!/usr/bin/python3
"""Side-by-side detection table: entrowatch against the established rules.

Starts the real entrowatchd (port 0, shipped config/entrowatch.yaml, --ready-file),
submits every report of every trace in tests/data through the gRPC API in
file order, records the verdict and the active anomalies (with severities)
that each Ack returns for the latest finalized step, runs the reference rules
of rules.py on the same traces, prints one Markdown table and exits non-zero
when acceptance fails:
  pathological trace (meta has onset_step): entrowatch's first alarm at or
    after the onset (any anomaly, info included, or a state other than
    NORMAL/WARMUP) is no later than the earliest first alarm of any rule
    at or after the onset, and it exists;
  healthy trace (meta "healthy": true): no warning or critical anomaly at any
    step and no state other than NORMAL after warm-up.

Usage: side_by_side.py --daemon BUILD/src/daemon/entrowatchd [--data DIR]
       [--config FILE] [--only NAME...]
"""

import argparse
import glob
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, HERE)

import rules  # noqa: E402

QUIET_STATES = {"HEALTH_STATE_UNSPECIFIED", "WARMUP", "NORMAL"}


def generate_stubs(out_dir):
    os.makedirs(out_dir, exist_ok=True)
    proto_dir = os.path.join(REPO, "proto")
    plugin = os.environ.get("GRPC_PYTHON_PLUGIN", "/usr/bin/grpc_python_plugin")
    subprocess.run([os.environ.get("PROTOC", "protoc"), "-I", proto_dir,
                    f"--python_out={out_dir}", f"--grpc_python_out={out_dir}",
                    f"--plugin=protoc-gen-grpc_python={plugin}",
                    os.path.join(proto_dir, "entrowatch", "v1", "entrowatch.proto")], check=True)
    sys.path.insert(0, out_dir)


class Daemon:
    """entrowatchd on loopback port 0, stopped by its PID."""

    def __init__(self, binary, config, work):
        text = open(config, encoding="utf-8").read()
        text = re.sub(r'listen: "127\.0\.0\.1:\d+"', 'listen: "127.0.0.1:0"', text)
        self.config = os.path.join(work, "entrowatch.yaml")
        with open(self.config, "w", encoding="utf-8") as f:
            f.write(text)
        self.ready = os.path.join(work, "ready.json")
        self.log = open(os.path.join(work, "entrowatchd.log"), "w")
        self.proc = subprocess.Popen([binary, "--config", self.config, "--ready-file", self.ready],
                                     stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while not os.path.exists(self.ready):
            if self.proc.poll() is not None:
                raise RuntimeError(f"entrowatchd exited with {self.proc.returncode}; log in {work}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("entrowatchd did not write its ready file within 60 s")
            time.sleep(0.05)
        with open(self.ready, encoding="utf-8") as f:
            self.address = json.load(f)["grpc_address"]

    def stop(self):
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=30)
        self.log.close()


def replay(stub, pb2, path):
    """Submits every report of path; returns {step: (state, [(pattern, severity, subject)])}
    as of the last Ack that carried that finalized step."""
    from google.protobuf import json_format
    timeline = {}
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            report = json_format.Parse(line, pb2.Report())
            ack = stub.Submit(report, timeout=30)
            if ack.code != 0:
                raise RuntimeError(f"{path} line {number}: {ack.code} {ack.message}")
            if not ack.HasField("latest_step"):
                continue
            state = pb2.HealthState.Name(ack.verdict.state)
            anomalies = [(pb2.Pattern.Name(a.pattern), pb2.Severity.Name(a.severity), a.subject)
                         for a in ack.anomalies]
            timeline[ack.latest_step.step] = (state, anomalies)
    return timeline


def first_at_or_after(steps, onset):
    later = [s for s in steps if s >= onset]
    return min(later) if later else None


def cell(first, before):
    text = "-" if first is None else str(first)
    return f"{text} (+{before} before)" if before else text


def analyse(name, meta, timeline, steps):
    onset = meta.get("onset_step")
    healthy = bool(meta.get("healthy"))
    warmup = int(meta.get("warmup_steps", 0))
    ordered = sorted(timeline)
    alarm = [s for s in ordered if timeline[s][1] or timeline[s][0] not in QUIET_STATES]
    paging = [s for s in ordered
              if any(sev in ("WARNING", "CRITICAL") for _, sev, _ in timeline[s][1])]
    states = [s for s in ordered if timeline[s][0] not in QUIET_STATES]
    rule_alarms = {cls.name: rules.alarm_steps(cls, signal_name, steps)
                   for cls, signal_name in rules.RULES}
    row = {"name": name, "onset": onset, "healthy": healthy}
    if healthy:
        counts = {sev: 0 for sev in ("INFO", "WARNING", "CRITICAL")}
        previous = set()
        for s in ordered:
            active = {(p, sev, subj) for p, sev, subj in timeline[s][1]}
            for _, sev, _ in active - previous:
                counts[sev] = counts.get(sev, 0) + 1
            previous = active
        bad_states = [s for s in states if s >= warmup]
        row["entrowatch"] = (f"info {counts['INFO']}, warning {counts['WARNING']}, "
                             f"critical {counts['CRITICAL']}, state steps {len(bad_states)}")
        row["rules"] = {k: f"{rules.episodes(v)} ({len(v)} steps)" for k, v in rule_alarms.items()}
        row["ok"] = not paging and not bad_states
        row["why"] = "" if row["ok"] else (
            f"paging anomaly at {paging[:3]}" if paging else f"state at steps {bad_states[:3]}")
        return row
    if onset is None:
        row.update(entrowatch="(no onset_step in meta)", rules={}, ok=True, why="")
        return row
    ew_first = first_at_or_after(alarm, onset)
    row["ew_first"] = cell(ew_first, sum(1 for s in alarm if s < onset))
    row["ew_page"] = cell(first_at_or_after(paging, onset), sum(1 for s in paging if s < onset))
    row["ew_state"] = cell(first_at_or_after(states, onset), sum(1 for s in states if s < onset))
    firsts = {}
    row["rules"] = {}
    for rule_name, alarms in rule_alarms.items():
        first = first_at_or_after(alarms, onset)
        firsts[rule_name] = first
        row["rules"][rule_name] = cell(first, sum(1 for s in alarms if s < onset))
    fired = [v for v in firsts.values() if v is not None]
    best = min(fired) if fired else None
    row["best"] = best
    row["ok"] = ew_first is not None and (best is None or ew_first <= best)
    if ew_first is None:
        row["why"] = "entrowatch never alarms at or after the onset"
    elif not row["ok"]:
        row["why"] = f"entrowatch {ew_first} > best rule {best}"
    else:
        row["why"] = ""
    return row


def print_table(rows):
    rule_names = [cls.name for cls, _ in rules.RULES]
    header = ["trace", "onset", "entrowatch first alarm", "first warning/critical",
              "first state"] + rule_names + ["ok"]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        if row["healthy"]:
            cells = [row["name"], "healthy", row["entrowatch"], "", ""]
        elif "ew_first" in row:
            cells = [row["name"], str(row["onset"]), row["ew_first"], row["ew_page"],
                     row["ew_state"]]
        else:
            cells = [row["name"], "-", row["entrowatch"], "", ""]
        cells += [row["rules"].get(n, "") for n in rule_names]
        cells.append("yes" if row["ok"] else "NO: " + row["why"])
        print("| " + " | ".join(cells) + " |")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--daemon", required=True, help="path to entrowatchd")
    parser.add_argument("--data", default=os.path.join(REPO, "tests", "data"))
    parser.add_argument("--config", default=os.path.join(REPO, "config", "entrowatch.yaml"))
    parser.add_argument("--only", nargs="*", help="trace names (default: every trace)")
    args = parser.parse_args()
    if not os.access(args.daemon, os.X_OK):
        parser.error(f"--daemon {args.daemon}: not an executable file")
    names = sorted(os.path.basename(p)[:-len(".jsonl")]
                   for p in glob.glob(os.path.join(args.data, "*.jsonl")))
    if args.only:
        unknown = set(args.only) - set(names)
        if unknown:
            parser.error(f"--only: no such trace in {args.data}: {', '.join(sorted(unknown))}")
        names = [n for n in names if n in args.only]
    with tempfile.TemporaryDirectory(prefix="entrowatch-detection-") as work:
        generate_stubs(os.path.join(work, "stubs"))
        import grpc
        from entrowatch.v1 import entrowatch_pb2 as pb2
        from entrowatch.v1 import entrowatch_pb2_grpc as pb2_grpc
        daemon = Daemon(args.daemon, args.config, work)
        rows = []
        try:
            channel = grpc.insecure_channel(daemon.address)
            stub = pb2_grpc.MonitorStub(channel)
            for name in names:
                path = os.path.join(args.data, name + ".jsonl")
                meta_path = os.path.join(args.data, name + ".meta.json")
                meta = json.load(open(meta_path, encoding="utf-8")) if os.path.exists(
                    meta_path) else {}
                timeline = replay(stub, pb2, path)
                rows.append(analyse(name, meta, timeline, rules.load_steps(path)))
            channel.close()
        finally:
            daemon.stop()
    print_table(rows)
    failed = [r["name"] for r in rows if not r["ok"]]
    print()
    if failed:
        print(f"acceptance FAILED on {len(failed)} of {len(rows)} traces: {', '.join(failed)}")
        return 1
    print(f"acceptance met on all {len(rows)} traces")
    return 0


if __name__ == "__main__":
    sys.exit(main())
