"""Fixtures: the entrowatch package installed as users install it, and entrowatchd.

At start-up the package is built from clients/python into a virtual
environment (`python3 -m venv --system-site-packages` + `pip install
--no-build-isolation`), whose site-packages is then put first on sys.path, so
the tests exercise the installed package with its generated stubs.
ENTROWATCH_PY_VENV names the venv directory (default: a temporary one).

The daemon binary is ENTROWATCH_DAEMON, else the newest build*/src/daemon/
entrowatchd of the repository; tests that need it are skipped without one.
"""

import glob
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

import pytest

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
_SKIP_COPY = shutil.ignore_patterns("build", "*.egg-info", "__pycache__", "*_pb2*.py")


_TEMP_VENV = []


def _install_package():
    venv = os.environ.get("ENTROWATCH_PY_VENV")
    if not venv:
        venv = tempfile.mkdtemp(prefix="entrowatch-venv-")
        _TEMP_VENV.append(venv)
    python = os.path.join(venv, "bin", "python")
    if not os.path.exists(python):
        subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", venv], check=True)
    with tempfile.TemporaryDirectory(prefix="entrowatch-src-") as src:
        pkg = os.path.join(src, "python")
        shutil.copytree(os.path.join(REPO, "clients", "python"), pkg, ignore=_SKIP_COPY)
        env = dict(os.environ, ENTROWATCH_PROTO_DIR=os.path.join(REPO, "proto"))
        subprocess.run([python, "-m", "pip", "install", "-q", "--no-build-isolation",
                        "--no-deps", "--force-reinstall", pkg], check=True, env=env)
    site = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()
    return venv, site


def pytest_configure(config):
    venv, site = _install_package()
    sys.path.insert(0, site)
    os.environ["ENTROWATCH_PY_VENV_PYTHON"] = os.path.join(venv, "bin", "python")


def pytest_unconfigure(config):
    for venv in _TEMP_VENV:
        shutil.rmtree(venv, ignore_errors=True)


def daemon_binary():
    path = os.environ.get("ENTROWATCH_DAEMON")
    if path:
        return path if os.access(path, os.X_OK) else None
    found = [p for p in glob.glob(os.path.join(REPO, "build*", "src", "daemon", "entrowatchd"))
             if os.access(p, os.X_OK)]
    return max(found, key=os.path.getmtime) if found else None


def wait_for(condition, timeout, what, interval=0.02):
    """Polls condition() until it is truthy or timeout seconds pass."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


class Daemon:
    """One entrowatchd process on free loopback ports, stopped by PID."""

    def __init__(self, binary, workdir, extra_config=""):
        self.binary = binary
        self.workdir = workdir
        self.extra_config = extra_config
        self.proc = None
        self.grpc_address = None
        self.metrics_address = None
        self._log = None

    def start(self, grpc_port=0):
        config = os.path.join(self.workdir, "entrowatch.yaml")
        ready = os.path.join(self.workdir, "ready.json")
        with open(config, "w") as f:
            f.write(f'grpc: {{listen: "127.0.0.1:{grpc_port}"}}\n'
                    'metrics: {listen: "127.0.0.1:0"}\n' + self.extra_config)
        if os.path.exists(ready):
            os.remove(ready)
        self._log = open(os.path.join(self.workdir, "entrowatchd.log"), "ab")
        self.proc = subprocess.Popen([self.binary, "--config", config, "--ready-file", ready],
                                     stdout=self._log, stderr=subprocess.STDOUT)

        def read_ready():
            if self.proc.poll() is not None:
                raise AssertionError(f"entrowatchd exited with {self.proc.returncode}:\n"
                                     + self.log_tail())
            try:
                with open(ready) as f:
                    return json.load(f)
            except (OSError, ValueError):
                return None

        info = wait_for(read_ready, 30, "entrowatchd's ready file")
        self.grpc_address = info["grpc_address"]
        self.metrics_address = info["metrics_address"]
        assert info["pid"] == self.proc.pid
        return self

    @property
    def grpc_port(self):
        return int(self.grpc_address.rsplit(":", 1)[1])

    def kill(self):
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)
        self._log.close()

    def stop(self):
        if self.proc is None or self.proc.poll() is not None:
            return
        os.kill(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        self._log.close()

    def log_tail(self, n=4000):
        try:
            with open(os.path.join(self.workdir, "entrowatchd.log"), "rb") as f:
                return f.read()[-n:].decode(errors="replace")
        except OSError:
            return ""

    def metrics(self):
        with urllib.request.urlopen(f"http://{self.metrics_address}/metrics", timeout=10) as r:
            return r.read().decode()

    def stub(self):
        import grpc
        from entrowatch.v1 import entrowatch_pb2_grpc
        return entrowatch_pb2_grpc.MonitorStub(grpc.insecure_channel(self.grpc_address))


@pytest.fixture
def daemon_factory(tmp_path):
    binary = daemon_binary()
    if binary is None:
        pytest.skip("entrowatchd is not built (set ENTROWATCH_DAEMON)")
    started = []

    def make(extra_config=""):
        workdir = tmp_path / f"daemon{len(started)}"
        workdir.mkdir()
        d = Daemon(binary, str(workdir), extra_config)
        started.append(d)
        return d.start()

    yield make
    for d in started:
        d.stop()


@pytest.fixture
def daemon(daemon_factory):
    return daemon_factory()


def free_port():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
