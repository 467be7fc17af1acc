"""The README's commands, run as a new user would type them (issue 20).

Every line of a ```sh block in README.md that starts with `scripts/`,
`cmake ` or `build/quorumgate` is run here, exactly as written:

- the first block must hold the two promised commands; `scripts/demo.sh` runs
  from the repository root and its output must show what the README promises
  (a held verify, every controller verified, TOTP required afterwards, the
  metrics); `scripts/test.sh` is what `.ci/run` calls (checked, not re-run:
  it is the suite this test belongs to);
- `cmake ...` runs in a copy of the tracked files (so it cannot disturb the
  build the suite is testing);
- `build/quorumgate ...` runs in a directory whose `build` points at the
  binary under test and whose `quorumgate.yaml` is a working configuration for
  a simulator and a redis-server started here (with a management credential,
  so that `check` can pass).

A command of another form in one of those blocks fails the test until this
file says how to run it, so a new README command cannot go unrun.

Not collected by `pytest tests` (tests/conftest.py): scripts/test.sh runs this
directory once, after the release build, because the demo and the README's
build take a minute each.
"""
import os
import re
import shlex
import signal
import subprocess
import time

import pytest

from tests.conftest import IDENTITIES, REPO_ROOT, default_qg_config, quorumgate_binary
from tests.support.procs import parse_json_lines, wait_until
from tests.support.yamlout import dump_yaml

README = os.path.join(REPO_ROOT, "README.md")


def sh_commands():
    """(block number, line) for every command line of every ```sh block."""
    out, block, inside = [], 0, False
    with open(README) as f:
        for line in f:
            if line.startswith("```"):
                if inside:
                    inside = False
                elif line.strip() == "```sh":
                    inside, block = True, block + 1
                continue
            if inside:
                cmd = re.sub(r"\s+#.*$", "", line).strip()
                if cmd and not cmd.startswith("#"):
                    out.append((block, cmd))
    return out


RUNNABLE = ("scripts/", "cmake ", "build/quorumgate")


def runnable_commands():
    return [c for b, c in sh_commands() if b > 1 and c.startswith(RUNNABLE)]


def test_first_block_is_the_two_commands_and_ci_runs_them():
    first = [c for b, c in sh_commands() if b == 1]
    assert first == ["scripts/demo.sh", "scripts/test.sh"], first
    with open(os.path.join(REPO_ROOT, ".ci", "run")) as f:
        ci = [ln.strip() for ln in f if not ln.lstrip().startswith("#")]
    assert "scripts/test.sh" in ci, ".ci/run must call the README's test command as written"


def test_demo_as_the_readme_writes_it():
    p = subprocess.run(["bash", "-c", "scripts/demo.sh"], cwd=REPO_ROOT, stdin=subprocess.DEVNULL,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=600)
    out = p.stdout.decode(errors="replace")
    assert p.returncode == 0, out[-4000:]
    lag = re.search(r"lags (\d+) ms behind", out)
    held = re.search(r"mfa/verify -> 200 after (\d+) ms", out)
    assert lag and held, out[-3000:]
    assert int(held.group(1)) >= int(lag.group(1)), "verify not held for the lagging follower:\n" + out
    rows = re.findall(r"^\s+(ctrl\d)\s+(leader|follower)\s+(verified|NOT verified)$", out, re.M)
    assert len(rows) == 3 and all(r[2] == "verified" for r in rows), out
    assert re.search(r"Quorumgate-Replication: acked=ctrl\d,ctrl\d,ctrl\d$", out, re.M), out
    assert "a new OIDC login now needs TOTP: yes" in out, out
    assert re.search(r'quorumgate_replication_wait_seconds_count\{call="verify"\} 1(\.0)?$', out, re.M), out
    assert re.search(r'quorumgate_requests_total\{class="mfa",method="POST",code="2xx"\} [1-9]', out), out
    assert "demo: every step behaved as promised" in out and "DEMO FAILED" not in out


def test_every_runnable_readme_command_is_known():
    cmds = runnable_commands()
    assert any(c.startswith("build/quorumgate -t") for c in cmds), cmds
    for c in cmds:
        assert kind_of(c) is not None, "README command %r: say in this file how to run it" % c


def kind_of(cmd):
    argv = shlex.split(cmd)
    if argv[0] == "cmake":
        return "cmake"
    if argv[0] != "build/quorumgate":
        return None
    rest = argv[1:]
    if rest in (["--version"], ["--help"]):
        return "info"
    if "-t" in rest:
        return "check-config"
    if rest == ["-c", "quorumgate.yaml"]:
        return "serve"
    if rest == ["relay", "-c", "quorumgate.yaml"]:
        return "relay"
    if rest == ["check", "-c", "quorumgate.yaml"]:
        return "check"
    return None


@pytest.fixture
def user_dir(tmp_path, sim_factory, redis_server, certs):
    """A directory laid out as the README assumes: build/quorumgate and quorumgate.yaml."""
    binary = quorumgate_binary()
    assert os.access(binary, os.X_OK), "no binary at %s" % binary
    os.symlink(os.path.dirname(os.path.abspath(binary)), str(tmp_path / "build"))
    sim = sim_factory(tls=True)
    cfg = default_qg_config(sim, redis_server, certs, str(tmp_path))
    events = tmp_path / "ctrl1-events.json"
    events.write_text("")
    cfg["relay"] = {"sources": [{"controller": sim.node_ids[0], "path": str(events)}]}
    pw = tmp_path / "mgmt.password"
    pw.write_text(IDENTITIES["admin"] + "\n")
    cfg["gate"] = dict(cfg.get("gate") or {}, management={"username": "admin", "password_file": str(pw)})
    (tmp_path / "quorumgate.yaml").write_text(dump_yaml(cfg))
    return tmp_path


def run_readme(cmd, cwd, timeout=60):
    return subprocess.run(["bash", "-c", cmd], cwd=str(cwd), stdin=subprocess.DEVNULL,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout)


@pytest.mark.parametrize("cmd", [c for c in runnable_commands() if kind_of(c) in ("info", "check-config", "check")])
def test_short_readme_command(cmd, user_dir):
    p = run_readme(cmd, user_dir)
    out = p.stdout.decode()
    assert p.returncode == 0, (cmd, out, p.stderr.decode())
    if cmd.endswith("--version"):
        assert re.fullmatch(r"quorumgate \d+\.\d+\.\d+\S*\n", out), out
    elif cmd.endswith("--help"):
        assert out.startswith("usage:") and "-t -c FILE" in out and "relay" in out, out
    elif kind_of(cmd) == "check":
        assert "ready: every check passed" in out, out
        assert IDENTITIES["admin"] not in out + p.stderr.decode()
    else:
        assert "quorumgate.yaml: configuration is valid" in out, out


@pytest.mark.parametrize("cmd", [c for c in runnable_commands() if kind_of(c) in ("serve", "relay")])
def test_long_running_readme_command(cmd, user_dir):
    errlog = open(str(user_dir / "stderr"), "wb")
    proc = subprocess.Popen(["bash", "-c", "exec " + cmd], cwd=str(user_dir), stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=errlog)
    try:
        def started():
            assert proc.poll() is None, (user_dir / "stderr").read_text()
            kind = "client" if kind_of(cmd) == "serve" else "relay"
            return any(e.get("msg") == "listening" and e.get("kind") == kind
                       for e in parse_json_lines((user_dir / "stderr").read_text()))
        wait_until(started, timeout=20, what="%s to start" % cmd)
        time.sleep(0.3)
        assert proc.poll() is None, (user_dir / "stderr").read_text()
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=20)
        errlog.close()
    assert code == 0, (cmd, code, (user_dir / "stderr").read_text()[-2000:])


@pytest.mark.parametrize("cmd", [c for c in runnable_commands() if kind_of(c) == "cmake"])
def test_readme_build_command(cmd, tmp_path):
    files = subprocess.run(["git", "ls-files", "-z"], cwd=REPO_ROOT, stdout=subprocess.PIPE,
                           check=True).stdout.split(b"\0")
    src = tmp_path / "src"
    for rel in filter(None, files):
        rel = rel.decode()
        dst = src / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        if os.path.isfile(os.path.join(REPO_ROOT, rel)):
            with open(os.path.join(REPO_ROOT, rel), "rb") as a, open(str(dst), "wb") as b:
                b.write(a.read())
    p = run_readme(cmd, src, timeout=900)
    assert p.returncode == 0, p.stdout.decode()[-3000:] + p.stderr.decode()[-3000:]
    assert os.access(str(src / "build" / "quorumgate"), os.X_OK)
    v = subprocess.run([str(src / "build" / "quorumgate"), "--version"], stdout=subprocess.PIPE, timeout=10)
    assert v.returncode == 0 and v.stdout.startswith(b"quorumgate ")
