"""The Python client against a locked-down entrowatchd: mutual TLS and tokens."""
import subprocess

import grpc
import pytest

import entrowatch
from entrowatch.v1 import entrowatch_pb2 as pb
from entrowatch.v1 import entrowatch_pb2_grpc as pb_grpc


@pytest.fixture
def certs(tmp_path):
    script = """
set -e
openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 1 -subj /CN=test-ca
openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj /CN=127.0.0.1
printf 'subjectAltName=IP:127.0.0.1' > san.ext
openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem -days 1 -extfile san.ext
openssl req -newkey rsa:2048 -nodes -keyout client.key -out client.csr -subj /CN=trainer
openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out client.pem -days 1
"""
    subprocess.run(["sh", "-c", script], cwd=tmp_path, check=True, capture_output=True)
    (tmp_path / "team.token").write_text("team-secret\n")
    return tmp_path


def locked_config(d):
    return (f"security:\n  tls: {{cert_file: {d}/server.pem, key_file: {d}/server.key, "
            f"client_ca_file: {d}/ca.pem}}\n"
            f"  tokens:\n    - {{name: team, token_file: {d}/team.token, runs: [\"team-*\"]}}\n")


def get_run(daemon, certs, run_id, token):
    creds = grpc.ssl_channel_credentials((certs / "ca.pem").read_bytes(),
                                         (certs / "client.key").read_bytes(),
                                         (certs / "client.pem").read_bytes())
    with grpc.secure_channel(daemon.grpc_address, creds) as channel:
        return pb_grpc.MonitorStub(channel).GetRun(
            pb.GetRunRequest(run_id=run_id), timeout=10,
            metadata=[("authorization", f"Bearer {token}")])


def test_monitor_sends_over_mutual_tls_with_a_token(daemon_factory, certs):
    daemon = daemon_factory(locked_config(certs))
    tls = dict(tls_ca=str(certs / "ca.pem"), tls_cert=str(certs / "client.pem"),
               tls_key=str(certs / "client.key"))
    with entrowatch.Monitor(daemon.grpc_address, run_id="team-run", rank=0, world_size=1,
                            token_file=str(certs / "team.token"), **tls) as mon:
        for step in range(3):
            mon.log_scalars(step, loss=1.0, lr=1e-3)
            mon.log_token_entropies(step, [1.0, 2.0], vocab_size=100)
        assert mon.flush(timeout=20)
    status = get_run(daemon, certs, "team-run", "team-secret")
    assert status.last_step == 2

    # A wrong token gets nothing in, and the training loop does not notice.
    with entrowatch.Monitor(daemon.grpc_address, run_id="team-other", rank=0, world_size=1,
                            token="wrong", close_timeout_s=1.0, **tls) as mon:
        mon.log_scalars(0, loss=1.0)
        assert not mon.flush(timeout=2)
    with pytest.raises(grpc.RpcError) as e:
        get_run(daemon, certs, "team-other", "team-secret")
    assert e.value.code() == grpc.StatusCode.NOT_FOUND


def test_credential_arguments_are_checked_at_the_call_site(tmp_path):
    with pytest.raises(ValueError, match="token_file"):
        entrowatch.Monitor("127.0.0.1:1", run_id="r", rank=0, world_size=1,
                           token_file=str(tmp_path / "absent"))
    with pytest.raises(ValueError, match="tls_cert and tls_key"):
        entrowatch.Monitor("127.0.0.1:1", run_id="r", rank=0, world_size=1,
                           tls_cert=str(tmp_path / "c.pem"))
