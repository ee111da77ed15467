"""Real Prometheus / Alertmanager / entrowatchd processes for deploy tests.

Every process binds 127.0.0.1, is started on a free port, is waited for by
polling a readiness condition with a deadline, and is stopped by its PID.
"""

import ctypes
import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request

PROMETHEUS = "/usr/bin/prometheus"
ALERTMANAGER = "/usr/bin/prometheus-alertmanager"


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(condition, timeout, what, interval=0.1):
    """Polls condition() until it returns a truthy value; raises on timeout."""
    deadline = time.monotonic() + timeout
    last_error = None
    while time.monotonic() < deadline:
        try:
            value = condition()
            if value:
                return value
        except (OSError, urllib.error.URLError, ValueError) as e:
            last_error = e
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}"
                       + (f" (last error: {last_error})" if last_error else ""))


def http_get(url, timeout=5):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.read().decode()


def http_json(url, timeout=5):
    """GET and decode JSON; Prometheus answers bad queries with 400 and a JSON error."""
    try:
        return json.loads(http_get(url, timeout))
    except urllib.error.HTTPError as e:
        return json.loads(e.read().decode())


_PR_SET_PDEATHSIG = 1


def _die_with_parent():
    # A test killed by a timeout must not leave servers behind.
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class Process:
    """A child process with its output in a log file, stopped by PID; it also
    gets SIGTERM should the test process die first."""

    def __init__(self, name, argv, workdir):
        self.name = name
        self.log_path = os.path.join(workdir, f"{name}.log")
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(argv, stdout=self._log, stderr=subprocess.STDOUT,
                                     cwd=workdir, preexec_fn=_die_with_parent)

    @property
    def pid(self):
        return self.proc.pid

    def alive(self):
        return self.proc.poll() is None

    def stop(self, timeout=15):
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=timeout)
        self._log.close()
        return self.proc.returncode

    def log_tail(self, lines=30):
        with open(self.log_path, "rb") as f:
            return "\n".join(f.read().decode(errors="replace").splitlines()[-lines:])


def start_prometheus(workdir, config_text, timeout=30):
    port = free_port()
    config = os.path.join(workdir, "prometheus.yml")
    with open(config, "w") as f:
        f.write(config_text)
    p = Process("prometheus", [
        PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={workdir}/tsdb",
        f"--web.listen-address=127.0.0.1:{port}", "--web.enable-lifecycle",
        "--storage.tsdb.retention.time=1h", "--log.level=warn"], workdir)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: p.alive() and http_get(url + "/-/ready"), timeout, "Prometheus ready")
    except TimeoutError:
        p.stop()
        raise
    return p, url


def start_alertmanager(workdir, config_text, timeout=30):
    port = free_port()
    config = os.path.join(workdir, "alertmanager.yml")
    with open(config, "w") as f:
        f.write(config_text)
    # An empty cluster address turns off gossip (no second port to collide).
    p = Process("alertmanager", [
        ALERTMANAGER, f"--config.file={config}", f"--storage.path={workdir}/am",
        f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address=",
        "--log.level=warn"], workdir)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: p.alive() and http_get(url + "/-/ready"), timeout, "Alertmanager ready")
    except TimeoutError:
        p.stop()
        raise
    return p, url


def prom_query(url, expr, at=None):
    params = {"query": expr}
    if at is not None:
        params["time"] = f"{at:.3f}"
    r = http_json(f"{url}/api/v1/query?{urllib.parse.urlencode(params)}")
    if r.get("status") != "success":
        raise ValueError(f"query failed: {expr}: {r}")
    return r["data"]["result"]


def prom_query_range(url, expr, start, end, step):
    params = {"query": expr, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": str(step)}
    r = http_json(f"{url}/api/v1/query_range?{urllib.parse.urlencode(params)}")
    if r.get("status") != "success":
        raise ValueError(f"query failed: {expr}: {r}")
    return r["data"]["result"]
