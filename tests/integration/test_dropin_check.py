"""`quorumgate check -c FILE` (issue 13, item 5) against the simulator, a real redis-server and
the files the configuration names: one line per check, exit 0 only when every one passed."""
import os
import subprocess
import sys

from tests.integration.core_support import io_uring_allowed
from tests.integration.test_dropin_members import _mgmt


def _check(qg, prefix=()):
    qg.write_config()
    open(qg.stderr_path, "a").close()
    open(qg.stdout_path, "a").close()
    return subprocess.run(list(prefix) + [qg.binary, "check", "-c", qg.config_path],
                          capture_output=True, text=True, timeout=60)


def test_everything_fine(tmp_path, quorumgate):
    qg = quorumgate(_mgmt(tmp_path), start=False)
    p = _check(qg)
    out = p.stdout
    assert p.returncode == 0, out + p.stderr
    for nid in qg.sim.node_ids:
        assert any(line.split()[:2] == ["ok", nid] and "tls: certificate verified" in line
                   for line in out.splitlines()), out
    assert "version: v1.5.4" in out
    assert "health-checks API bound" in out
    assert "raft members ctrl1,ctrl2,ctrl3" in out
    assert "every controller names the same leader (%s)" % qg.sim.control.leader() in out
    assert "maxmemory-policy noeviction" in out
    assert "HMAC key: the same" in out
    assert "ready: every check passed" in out
    assert "admin-pw" not in out + p.stderr   # the secret never shows
    assert any(line.split()[:2] == ["ok", "upstream"] and "no client certificate" in line
               for line in out.splitlines()), out
    # upstream.batch_sends: what the kernel says of io_uring (a warning, never a failure)
    want = (["ok", "upstream", "batch_sends:", "io_uring", "available"] if io_uring_allowed()
            else ["WARN", "upstream", "batch_sends:"])
    assert any(line.split()[:len(want)] == want for line in out.splitlines()), out


def test_batch_sends_off_is_said(tmp_path, quorumgate):
    qg = quorumgate(_mgmt(tmp_path), start=False)
    qg.config["upstream"]["batch_sends"] = False
    p = _check(qg)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "ok   upstream   batch_sends off: one send per request" in p.stdout.splitlines(), p.stdout


def test_an_upstream_client_certificate_is_warned_about(tmp_path, quorumgate, certs):
    """Issue 14: a client certificate on quorumgate's own connections is
    shown to the controllers on behalf of every client; `check` says what
    that changes (a warning: the configuration stays usable)."""
    qg = quorumgate(_mgmt(tmp_path), start=False)
    qg.config["upstream"]["tls"]["cert"] = certs["cert"]
    qg.config["upstream"]["tls"]["key"] = certs["key"]
    p = _check(qg)
    out = p.stdout
    assert p.returncode == 0, out + p.stderr
    warn = [line for line in out.splitlines() if line.split()[:2] == ["WARN", "upstream"]]
    assert len(warn) == 1, out
    w = warn[0]
    assert certs["cert"] in w
    assert "on behalf of EVERY client" in w
    assert "/oidc/authorize that names no login method to /oidc/login/cert" in w
    assert "passthrough listener" in w
    assert "ready: every check passed" in out


def test_problems_fail_with_their_line(tmp_path, quorumgate, sim_factory):
    sim = sim_factory(tls=True, args=["--no-health-checks"])
    qg = quorumgate(sim=sim, start=False)
    qg.redis.command("CONFIG", "SET", "maxmemory-policy", "allkeys-lru")
    # another quorumgate checked in with another HMAC key
    qg.redis.command("SET", "qg:check:hmac", "0" * 64)
    p = _check(qg)
    out = p.stdout
    assert p.returncode == 1, out
    assert "FAIL" in out and "NOT ready" in out
    assert "health-checks API not bound (404): add '- binding: health-checks'" in out
    assert "maxmemory-policy allkeys-lru" in out
    assert "HMAC key differs" in out
    # a controller that cannot be reached is named with the error
    qg.config["controllers"][0]["url"] = "https://127.0.0.1:1"
    p = _check(qg)
    assert p.returncode == 1
    assert any(line.startswith("FAIL ctrl1") and "https://127.0.0.1:1" in line
               for line in p.stdout.splitlines()), p.stdout


def test_io_uring_refused_is_a_warning(tmp_path, quorumgate):
    """io_uring refused (tests/support/no_io_uring.py, as Docker's seccomp
    default): `check` warns and still passes -- quorumgate works without it."""
    qg = quorumgate(_mgmt(tmp_path), start=False)
    wrapper = os.path.join(os.path.dirname(os.path.dirname(__file__)), "support", "no_io_uring.py")
    p = _check(qg, prefix=(sys.executable, wrapper))
    assert p.returncode == 0, p.stdout + p.stderr
    assert any(line.split()[:3] == ["WARN", "upstream", "batch_sends:"]
               and "io_uring is not permitted here" in line
               for line in p.stdout.splitlines()), p.stdout
