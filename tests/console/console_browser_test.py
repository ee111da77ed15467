#!/usr/bin/env python3
"""The web console in a real headless Chromium against a real entrowatchd fed
by traces from tests/data (`entrowatch replay`).

Checks: the state badge and the anomaly texts match GetRun; the charts and the
heatmaps are drawn (pixels of a screenshot, per chart); no JavaScript error,
console error or warning, or failed request; the page with basic auth on; a
run without attention data; a rollout run; a 100k-step run (load time and
memory printed); an unknown run id (a clear 404 page); a zoomed view from its
URL. Exit 77 (skipped) only when Chromium is not installed.
"""

import argparse
import base64
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cdp  # noqa: E402

failures = []


def check(condition, message):
    if not condition:
        failures.append(message)
        print("FAIL:", message, flush=True)
    return condition


class Daemon:
    def __init__(self, binary, workdir, name, basic_auth=None):
        self.dir = os.path.join(workdir, name)
        os.makedirs(self.dir)
        config = ['grpc:\n  listen: "127.0.0.1:0"\n', 'metrics:\n  listen: "127.0.0.1:0"\n']
        if basic_auth:
            secret = os.path.join(self.dir, "basic-auth")
            with open(secret, "w") as f:
                f.write(basic_auth + "\n")
            os.chmod(secret, 0o600)
            config.append(f'security:\n  metrics_basic_auth_file: "{secret}"\n')
        with open(os.path.join(self.dir, "config.yaml"), "w") as f:
            f.write("".join(config))
        ready = os.path.join(self.dir, "ready.json")
        self.log = open(os.path.join(self.dir, "daemon.log"), "w")
        self.process = subprocess.Popen(
            [binary, "--config", os.path.join(self.dir, "config.yaml"), "--ready-file", ready],
            stderr=self.log)
        deadline = time.monotonic() + 20
        while not (os.path.exists(ready) and os.path.getsize(ready) > 0):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("entrowatchd did not start: " +
                                   open(os.path.join(self.dir, "daemon.log")).read())
            time.sleep(0.02)
        info = json.load(open(ready))
        self.grpc = info["grpc_address"]
        self.http = "http://" + info["metrics_address"]

    def rss_mib(self):
        for line in open(f"/proc/{self.process.pid}/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def stop(self):
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()


def run_cli(cli, *args):
    out = subprocess.run([cli, *args], check=True, capture_output=True, text=True, timeout=120)
    return out.stdout


def get_run(cli, daemon, run):
    return json.loads(run_cli(cli, "status", "--addr", daemon.grpc, "--run", run, "--json"))


def http_get(url, auth=None):
    request = urllib.request.Request(url)
    if auth:
        request.add_header("Authorization", "Basic " + base64.b64encode(auth.encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=20) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def write_long_trace(path, run, steps):
    rng = random.Random(7)
    with open(path, "w") as f:
        for s in range(steps):
            level = 3.0 - (1.8 if s >= steps - 3000 else 0.0)
            values = ",".join(f"{max(0.01, level + rng.gauss(0, 0.3)):.3f}" for _ in range(4))
            layers = ",".join(
                '{"layer":%d,"headEntropy":[%s]}' %
                (l, ",".join(f"{2 + 0.2 * l + rng.random() * 0.1:.3f}" for _ in range(4)))
                for l in range(4))
            f.write('{"runId":"%s","step":"%d","seq":"%d","tokenEntropies":[{"values":[%s],'
                    '"vocabSize":32000}],"grad":{"globalNorm":%.4f},'
                    '"scalars":{"loss":%.4f,"learningRate":0.0003},"attentionEntropies":[%s]}\n'
                    % (run, s, s + 1, values, 0.5 + rng.random() * 0.1,
                       2.5 + rng.random() * 0.1, layers))


def page_state(browser):
    """What the page shows: badges, anomaly rows, chart and canvas rectangles."""
    return browser.evaluate("""(() => {
      const rect = (e) => { const r = e.getBoundingClientRect();
                            return [r.left + scrollX, r.top + scrollY, r.width, r.height]; };
      const cellsOf = (id) => { const c = document.getElementById(id);
                                if (!c || !c.dataset.cells) return null;
                                const r = rect(c); const o = c.dataset.cells.split(',').map(Number);
                                return [r[0] + o[0], r[1] + o[1], o[2], o[3]]; };
      return {
        title: document.title,
        badge: (document.querySelector('#run-header .badge') || {}).textContent || null,
        error: (document.getElementById('error') || {}).textContent || null,
        rows: Array.from(document.querySelectorAll('table.runs tbody tr')).map((tr) => ({
          run: tr.dataset.run, state: tr.querySelector('.badge').dataset.state,
          anomalies: tr.querySelector('.anomalies').textContent})),
        anomalies: Array.from(document.querySelectorAll('.anomaly-row')).map((tr) => ({
          key: tr.dataset.anomaly, active: tr.classList.contains('active'),
          reason: tr.querySelector('.reason').textContent,
          action: tr.querySelector('.action').textContent})),
        charts: Array.from(document.querySelectorAll('#charts .card')).map((c) => {
          const g = c.querySelector('[data-area]');
          const offset = g ? g.dataset.area.split(',').map(Number) : null;
          const r = g ? rect(g) : null;
          return { id: c.id, drawn: !c.classList.contains('nodata'),
                   rect: rect(c.querySelector('.plot')),
                   area: g ? [r[0] + offset[0], r[1] + offset[1], offset[2], offset[3]] : null,
                   colors: g ? g.dataset.colors.split(';') : [],
                   empty: c.querySelector('.empty').textContent};
        }),
        heatmapCells: cellsOf('heatmap'),
        headsCells: cellsOf('heads'),
        heatmap: (() => { const c = document.getElementById('heatmap-card');
                          return c ? { drawn: !c.classList.contains('nodata'),
                                       rect: rect(document.getElementById('heatmap')),
                                       text: c.textContent } : null; })(),
        heads: (() => { const c = document.getElementById('heads-card');
                        return c ? { drawn: !document.getElementById('heads').classList.contains('hidden'),
                                     rect: rect(document.getElementById('heads')),
                                     title: c.querySelector('h2').textContent,
                                     text: c.textContent } : null; })(),
        range: (document.getElementById('range') || {}).textContent || null,
        markers: Array.from(document.querySelectorAll('#charts .dygraph-annotation'))
            .map((a) => a.title),
        text: document.body.innerText,
      };
    })()""")


def check_drawn(image, rect, what):
    fraction, colours = cdp.region_stats(image, rect)
    return check(fraction > 0.02 and colours >= 4,
                 f"{what} looks blank: {fraction:.3f} of its pixels drawn, {colours} colours "
                 f"(rect {rect})")


def check_run_page(browser, daemon, cli, run, shot=None, expect_attention=True, url=None):
    truth = get_run(cli, daemon, run)
    status, seconds = browser.open(url or f"{daemon.http}/runs/{run}")
    check(url is not None or status == 200, f"/runs/{run}: HTTP {status}")
    page = page_state(browser)
    state = truth.get("verdict", {}).get("state", "HEALTH_STATE_UNSPECIFIED")
    check(page["badge"] == state, f"{run}: badge {page['badge']!r}, GetRun says {state!r}")
    check(page["error"] is None, f"{run}: error banner {page['error']!r}")
    shown = {a["key"]: a for a in page["anomalies"]}
    for anomaly in truth.get("anomalies", []):
        key = "|".join([anomaly["pattern"], anomaly.get("subject", ""),
                        str(int(anomaly.get("sinceStep", "0")))])
        row = shown.get(key)
        if check(row is not None, f"{run}: active anomaly {key} not shown ({list(shown)})"):
            check(row["active"], f"{run}: {key} not marked active")
            check(row["reason"] == anomaly["reason"],
                  f"{run}: reason {row['reason']!r} != GetRun {anomaly['reason']!r}")
            check(row["action"] == anomaly["recommendedAction"],
                  f"{run}: action {row['action']!r} != {anomaly['recommendedAction']!r}")
    for anomaly in truth.get("anomalies", []):
        hover = [m for m in page["markers"] if anomaly["reason"] in m and
                 anomaly["recommendedAction"] in m]
        check(hover, f"{run}: no chart marker shows {anomaly['reason']!r} on hover "
                     f"({page['markers'][:2]})")
    png = browser.screenshot()
    if shot:
        with open(shot, "wb") as f:
            f.write(png)
    image = cdp.decode_png(png)
    drawn = [c for c in page["charts"] if c["drawn"]]
    for chart in ("chart-entropy", "chart-normalized", "chart-grad"):
        check(any(c["id"] == chart for c in drawn), f"{run}: {chart} not drawn")
    for chart in drawn:
        check_drawn(image, chart["rect"], f"{run} {chart['id']}")
        # The series themselves: pixels of their colours in the plotting area
        # (0.5-5% with the lines drawn; under 0.3% with only the anomaly
        # markers, as measured with the lines taken out).
        if check(chart["area"] is not None, f"{run} {chart['id']}: no plotting area"):
            fraction = cdp.colour_fraction(image, chart["area"], chart["colors"])
            check(fraction > 0.004, f"{run} {chart['id']}: only {fraction:.4f} of the plotting "
                                    f"area in the series colours {chart['colors']}")
    if expect_attention:
        if check(page["heatmap"]["drawn"] and page["heatmapCells"],
                 f"{run}: attention heatmap not drawn"):
            check_drawn(image, page["heatmap"]["rect"], f"{run} attention heatmap")
            ink = cdp.ink_fraction(image, page["heatmapCells"])
            check(ink > 0.9, f"{run} attention heatmap: {ink:.3f} of its cells painted")
        if check(page["heads"]["drawn"] and page["headsCells"], f"{run}: per-head view not drawn"):
            check_drawn(image, page["heads"]["rect"], f"{run} per-head view")
            ink = cdp.ink_fraction(image, page["headsCells"])
            check(ink > 0.7, f"{run} per-head view: {ink:.3f} of its cells painted")
    else:
        check(not page["heatmap"]["drawn"] and
              "No attention data reported for this run." in page["heatmap"]["text"],
              f"{run}: heatmap card should say there is no attention data: {page['heatmap']}")
        check("No attention data reported for this run." in page["heads"]["text"],
              f"{run}: per-head card should say there is no attention data")
    return truth, page, seconds


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--daemon", required=True)
    parser.add_argument("--cli", required=True)
    parser.add_argument("--data", required=True)
    parser.add_argument("--out", help="directory for the screenshots")
    parser.add_argument("--long-steps", type=int, default=100000)
    args = parser.parse_args()
    chromium = cdp.find_chromium()
    if chromium is None:
        print("SKIPPED: chromium is not installed (scripts/setup-deps.sh test installs it)")
        return 77
    out = args.out or tempfile.mkdtemp(prefix="entrowatch-console-")
    os.makedirs(out, exist_ok=True)
    started = time.monotonic()
    work = tempfile.mkdtemp(prefix="entrowatch-console-test-")
    daemon = Daemon(args.daemon, work, "plain")
    auth_daemon = None
    browser = None
    long_replay = None
    try:
        # The long run streams in while the other pages are checked.
        long_trace = os.path.join(work, "long.jsonl")
        write_long_trace(long_trace, "long-run", args.long_steps)
        long_replay = subprocess.Popen([args.cli, "replay", long_trace, "--addr", daemon.grpc],
                                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        runs = {"real-lr-spike": True, "synth-attention-collapse": True, "synth-panic": False,
                "synth-rollout-spike": False}
        for run in runs:
            run_cli(args.cli, "replay", os.path.join(args.data, run + ".jsonl"),
                    "--addr", daemon.grpc)

        browser = cdp.Browser(chromium, width=1400, height=1000)
        # The error detector itself: an uncaught exception is seen.
        browser.open("data:text/html,<body><script>throw new Error('console-probe')</script>")
        check(any("console-probe" in e for e in browser.errors()),
              "the JavaScript error detector missed a thrown error")
        browser.clear_events()

        # The runs list.
        status, _ = browser.open(daemon.http + "/")
        check(status == 200, f"/: HTTP {status}")
        rows = {r["run"]: r for r in page_state(browser)["rows"]}
        for run in runs:
            truth = get_run(args.cli, daemon, run)
            row = rows.get(run)
            if check(row is not None, f"/: no row for {run} ({list(rows)})"):
                check(row["state"] == truth["verdict"]["state"],
                      f"/: {run} badge {row['state']} != GetRun {truth['verdict']['state']}")
                for anomaly in truth.get("anomalies", []):
                    name = anomaly["pattern"].replace("_", " ").lower()
                    check(name in row["anomalies"], f"/: {run} does not list {name}")
        browser.screenshot()

        # One run per kind of data.
        truth, page, _ = check_run_page(browser, daemon, args.cli, "real-lr-spike",
                                        shot=os.path.join(out, "console-run.png"))
        check(page["title"].startswith("real-lr-spike"), f"title {page['title']!r}")
        check(any(c["id"] == "chart-loss" and c["drawn"] for c in page["charts"]),
              "real-lr-spike: loss and learning rate not drawn")
        check(len(truth.get("anomalies", [])) > 0, "real-lr-spike: GetRun has no anomaly to show")
        truth, page, _ = check_run_page(browser, daemon, args.cli, "synth-attention-collapse",
                                        shot=os.path.join(out, "console-collapse.png"))
        check(any(a["key"].startswith("ENTROPY_COLLAPSE") for a in page["anomalies"]),
              "synth-attention-collapse: ENTROPY_COLLAPSE not shown")
        check_run_page(browser, daemon, args.cli, "synth-panic", expect_attention=False,
                       shot=os.path.join(out, "console-no-attention.png"))
        _, status_json = http_get(f"{daemon.http}/api/v1/runs/synth-rollout-spike")
        generated = any(int(h.get("generatedTokenCount", "0")) > 0
                        for h in json.loads(status_json)["history"])
        _, page, _ = check_run_page(browser, daemon, args.cli, "synth-rollout-spike",
                                    expect_attention=False)
        chart = next(c for c in page["charts"] if c["id"] == "chart-generated")
        check(chart["drawn"] == generated,
              f"rollout: generated-token chart drawn={chart['drawn']}, data has it={generated}")

        # The same page as one self-contained file.
        report = os.path.join(out, "real-lr-spike-report.html")
        output = run_cli(args.cli, "report", "real-lr-spike", "--console", daemon.http,
                         "--out", report)
        check(output.startswith("wrote " + report), f"report: {output!r}")
        html = open(report).read()
        external = re.findall(r'(?:src|href)="(?!data:)[^"]*"', html)
        check(not external, f"report refers to other files: {external[:5]}")
        check_run_page(browser, daemon, args.cli, "real-lr-spike", url="file://" + report)
        for words, code, message in (
                (["real-lr-spike"], 2, "--out FILE.html is required"),
                (["real-lr-spike", "--console", "ftp://x", "--out", "x.html"], 2,
                 "--console: expected http://host:port"),
                (["no-such-run", "--console", daemon.http, "--out", "x.html"], 1, "HTTP 404"),
                (["real-lr-spike", "--console", "http://127.0.0.1:1", "--out", "x.html"], 1,
                 "cannot connect to http://127.0.0.1:1")):
            result = subprocess.run([args.cli, "report", *words], capture_output=True, text=True,
                                    timeout=60, cwd=work)
            check(result.returncode == code and message in result.stderr,
                  f"report {words}: exit {result.returncode}, {result.stderr!r}")

        # A run with no finalized step yet (one of its two ranks reported).
        pending = os.path.join(work, "pending.jsonl")
        with open(pending, "w") as f:
            f.write('{"runId":"pending-run","rank":0,"worldSize":2,"step":"0","seq":"1",'
                    '"grad":{"globalNorm":0.5}}\n')
        run_cli(args.cli, "replay", pending, "--addr", daemon.grpc)
        status, _ = browser.open(f"{daemon.http}/runs/pending-run")
        page = page_state(browser)
        check(status == 200 and "No step of this run is finalized yet" in page["text"],
              f"pending run: HTTP {status}, page says {page['text'][:300]!r}")

        # A zoomed view and a chosen step come from the URL.
        browser.open(f"{daemon.http}/runs/real-lr-spike?from=140&to=180&step=250")
        page = page_state(browser)
        check(page["range"].startswith("Steps 140–180"), f"zoom from the URL: {page['range']!r}")
        check("at step 250" in page["heads"]["title"], f"step from the URL: {page['heads']['title']!r}")

        # An unknown run: a clear page, not a blank one.
        mark = len(browser.events)
        status, _ = browser.open(f"{daemon.http}/runs/no-such-run")
        page = page_state(browser)
        check(status == 404, f"/runs/no-such-run: HTTP {status}")
        check("Unknown run" in page["text"] and "no-such-run" in page["text"] and
              "idle_expiry_seconds" in page["text"], f"unknown run page says: {page['text']!r}")
        # The 404 of the document itself is the one expected failure.
        browser.events = browser.events[:mark] + [
            e for e in browser.events[mark:]
            if not (e["method"] == "Log.entryAdded" and
                    e["params"]["entry"].get("url", "").endswith("/runs/no-such-run"))]

        # Live updates: while a run streams in (100 steps a second), its page
        # advances by itself, without a reload.
        live_trace = os.path.join(work, "live.jsonl")
        write_long_trace(live_trace, "live-run", 3000)
        live = subprocess.Popen([args.cli, "replay", live_trace, "--addr", daemon.grpc,
                                 "--rate", "100"], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 20
            while (http_get(f"{daemon.http}/api/v1/runs/live-run")[0] != 200 and
                   time.monotonic() < deadline):
                time.sleep(0.05)
            browser.open(f"{daemon.http}/runs/live-run")
            steps = browser.evaluate("""new Promise((resolve) => {
              const step = () => Number((/step (\\d+)/.exec(
                  document.querySelector('#run-header .meta').textContent) || [0, -1])[1]);
              const first = step();
              const end = Date.now() + 10000;
              const check = () => {
                if (step() > first || Date.now() > end) resolve([first, step()]);
                else setTimeout(check, 50);
              };
              check();
            })""", await_promise=True)
            check(steps[1] > steps[0] >= 0, f"the live run's page did not advance: steps {steps}")
            print(f"live update: step {steps[0]} -> {steps[1]} without a reload", flush=True)
        finally:
            live.kill()
            live.wait()

        # The 100k-step run.
        output, _ = long_replay.communicate(timeout=240)
        check(long_replay.returncode == 0 and f"{args.long_steps} acknowledged" in output,
              f"long replay: {output.strip()}")
        truth, page, seconds = check_run_page(browser, daemon, args.cli, "long-run",
                                              shot=os.path.join(out, "console-long.png"))
        heap = browser.call("Runtime.getHeapUsage")
        _, timeline = http_get(f"{daemon.http}/api/v1/runs/long-run/timeline")
        timeline = json.loads(timeline)
        _, status_json = http_get(f"{daemon.http}/api/v1/runs/long-run")
        points = len(json.loads(status_json)["history"])
        check(int(timeline["stepsRecorded"]) == args.long_steps,
              f"long run: {timeline['stepsRecorded']} steps recorded")
        check(0 < points <= 2048, f"long run: {points} points")
        check(seconds < 10, f"long run page took {seconds:.1f} s to load")
        print(f"long run: {args.long_steps} steps drawn from {points} points; page ready in "
              f"{seconds:.2f} s; JS heap {heap['usedSize'] / 1048576:.1f} MiB; API response "
              f"{len(status_json) / 1048576:.2f} MiB; console history "
              f"{int(timeline['historyBytes']) / 1048576:.2f} MiB; daemon RSS "
              f"{daemon.rss_mib():.0f} MiB", flush=True)

        # Basic auth on: every path refused without it, the pages work with it.
        auth_daemon = Daemon(args.daemon, work, "auth", basic_auth="ops:pa55word")
        run_cli(args.cli, "replay", os.path.join(args.data, "synth-panic.jsonl"),
                "--addr", auth_daemon.grpc)
        for path in ("/", "/runs/synth-panic", "/api/v1/runs", "/static/console.js", "/metrics"):
            code, _ = http_get(auth_daemon.http + path)
            check(code == 401, f"basic auth: {path} without credentials answered {code}")
            code, _ = http_get(auth_daemon.http + path, auth="ops:wrong")
            check(code == 401, f"basic auth: {path} with a wrong password answered {code}")
            code, _ = http_get(auth_daemon.http + path, auth="ops:pa55word")
            check(code == 200, f"basic auth: {path} with the password answered {code}")
        browser.call("Network.setExtraHTTPHeaders", headers={
            "Authorization": "Basic " + base64.b64encode(b"ops:pa55word").decode()})
        check_run_page(browser, auth_daemon, args.cli, "synth-panic", expect_attention=False)
        refused = subprocess.run([args.cli, "report", "synth-panic", "--console", auth_daemon.http,
                                  "--out", os.path.join(work, "refused.html")],
                                 capture_output=True, text=True, timeout=60)
        check(refused.returncode == 1 and "HTTP 401" in refused.stderr,
              f"report without credentials: {refused.returncode} {refused.stderr!r}")
        output = run_cli(args.cli, "report", "synth-panic", "--console", auth_daemon.http,
                         "--basic-auth-file", os.path.join(auth_daemon.dir, "basic-auth"),
                         "--out", os.path.join(work, "auth.html"))
        check(output.startswith("wrote "), f"report with credentials: {output!r}")

        errors = browser.errors()
        check(not errors, "JavaScript errors, console errors or failed requests:\n  " +
              "\n  ".join(errors))
    finally:
        if browser is not None:
            browser.close()
        if long_replay is not None and long_replay.poll() is None:
            long_replay.kill()
            long_replay.wait()
        daemon.stop()
        if auth_daemon is not None:
            auth_daemon.stop()
        shutil.rmtree(work, ignore_errors=True)
    print(f"screenshots in {out}; {time.monotonic() - started:.1f} s")
    if failures:
        print(f"{len(failures)} check(s) failed")
        return 1
    print("all console checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
