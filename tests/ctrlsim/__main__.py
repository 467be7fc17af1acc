"""python3 -m tests.ctrlsim [options]   (from the repository root)

Starts N simulated controllers and a control API on loopback, prints one JSON
line {"event":"ready",...} with every actual port on stdout (and writes it to
--ready-file), then runs until SIGTERM/SIGINT or POST /shutdown.
"""
import argparse
import faulthandler
import json
import os
import signal
import sys
import time

if __package__ in (None, ""):
    # run as a script path: python3 tests/ctrlsim/__main__.py
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    from tests.ctrlsim.sim import Simulator
else:
    from .sim import Simulator


def raise_fd_limit(want=65536):
    """~1000 concurrent connections need more than a 1024 soft limit."""
    try:
        import resource
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        target = want if hard == resource.RLIM_INFINITY else min(want, hard)
        if soft != resource.RLIM_INFINITY and soft < target:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ImportError, ValueError, OSError):
        pass


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python3 -m tests.ctrlsim", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nodes", type=int, default=3, help="controllers ctrl1..ctrlN (default 3)")
    ap.add_argument("--host", default="127.0.0.1", help="bind address (loopback only)")
    ap.add_argument("--ports", default="", help="comma-separated node ports (default: all 0 = free ports)")
    ap.add_argument("--control-port", type=int, default=0)
    ap.add_argument("--ready-file", help="write the ready JSON here (atomically)")
    ap.add_argument("--tls-cert", help="PEM certificate: serve HTTPS")
    ap.add_argument("--tls-key", help="PEM key for --tls-cert")
    ap.add_argument("--advertise-host", default="127.0.0.1",
                    help="host put in URLs the nodes report (controllers, version)")
    ap.add_argument("--identity", action="append", default=[],
                    help="NAME:PASSWORD[:admin] (repeatable); seeded on every node")
    ap.add_argument("--initial-leader", default="ctrl1", help="leader at start ('' = elect)")
    ap.add_argument("--election-timeout-ms", type=int, default=1000,
                    help="followers give up on a silent leader after this (real: 5000)")
    ap.add_argument("--election-delay-ms", type=int, default=200,
                    help="leaderless time before a majority elects a new leader")
    ap.add_argument("--forward-timeout-ms", type=int, default=5000,
                    help="follower->leader forward reply timeout (real: 5000)")
    ap.add_argument("--apply-wait-timeout-ms", type=int, default=5000,
                    help="serving node waits this long for its own apply (real: 5000)")
    ap.add_argument("--apply-timeout-ms", type=int, default=5000, help="raft apply timeout (real: 5000)")
    ap.add_argument("--idle-timeout-ms", type=int, default=5000,
                    help="idle keep-alive connections closed after (xweb default 5000)")
    ap.add_argument("--forward-errors", choices=("v1.5.4", "head"), default="v1.5.4",
                    help="forward dial/reply-timeout failures: v1.5.4 = 500 UNHANDLED, "
                         "head (>= v1.8.0) = 429 SERVER_TOO_MANY_REQUESTS")
    ap.add_argument("--lag-ms", action="append", default=[], help="NODE=MS replication lag (repeatable)")
    ap.add_argument("--commit-timeout-ms", type=int, default=0,
                    help="raft CommitTimeout: with no new entry, followers learn a commit after a random "
                         "1-2x this (real controllers: 50); 0 (default) = at once")
    ap.add_argument("--events-dir", help="write NODE-events.json entity-change files here")
    ap.add_argument("--new-address", help="send ziti-ctrl-address with this value ({port}, {id} expand)")
    ap.add_argument("--totp-issuer", default="openziti.io", help="edge.totp.hostname")
    ap.add_argument("--no-health-checks", action="store_true",
                    help="no health-checks binding (the default ctrl.yaml): /health-checks/* answer 404")
    ap.add_argument("--access-token-ttl", type=int, default=1800, help="seconds")
    a = ap.parse_args(argv)
    raise_fd_limit()

    if not (a.host.startswith("127.") or a.host in ("::1", "localhost")):
        ap.error("--host must be a loopback address (nothing may leave the machine)")
    ports = [int(p) for p in a.ports.split(",")] if a.ports else None
    if ports and len(ports) != a.nodes:
        ap.error("--ports needs exactly --nodes entries")
    if bool(a.tls_cert) != bool(a.tls_key):
        ap.error("--tls-cert and --tls-key go together")
    sim = Simulator(nodes=a.nodes, host=a.host, ports=ports, tls_cert=a.tls_cert, tls_key=a.tls_key,
                    election_timeout=a.election_timeout_ms / 1000.0,
                    election_delay=a.election_delay_ms / 1000.0,
                    forward_timeout=a.forward_timeout_ms / 1000.0,
                    apply_wait_timeout=a.apply_wait_timeout_ms / 1000.0,
                    apply_timeout=a.apply_timeout_ms / 1000.0,
                    idle_timeout=a.idle_timeout_ms / 1000.0,
                    forward_errors=a.forward_errors, events_dir=a.events_dir,
                    advertise_host=a.advertise_host, new_address=a.new_address,
                    totp_issuer=a.totp_issuer, access_token_ttl=a.access_token_ttl,
                    health_checks=not a.no_health_checks)
    for spec in a.identity:
        bits = spec.split(":")
        if len(bits) < 2:
            ap.error("--identity wants NAME:PASSWORD[:admin]")
        sim.cluster.seed_identity(bits[0], bits[1], len(bits) > 2 and bits[2] == "admin")
    sim.cluster.commit_timeout = a.commit_timeout_ms / 1000.0
    for spec in a.lag_ms:
        nid, ms = spec.split("=")
        sim.node(nid).lag = int(ms) / 1000.0
    sim.start(control_port=a.control_port, initial_leader=a.initial_leader or None)

    # Installed before the ready file: SimProcess may signal as soon as it
    # has read it, and the default actions of SIGTERM and SIGUSR1 kill.
    # The handler only appends to a list: it runs on the main thread between
    # two bytecodes, and an Event.set() there deadlocks when the main thread
    # is inside that Event's wait() holding its lock (seen in CI: the
    # simulator ignored SIGTERM and was SIGKILLed 10 s later).
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))
    # SIGUSR1 dumps every thread's stack to stderr (SimProcess.stop sends it
    # before SIGKILL, so a simulator that does not stop says where it is).
    faulthandler.register(signal.SIGUSR1, all_threads=True)

    info = sim.info()
    line = json.dumps(info)
    if a.ready_file:
        tmp = a.ready_file + ".tmp"
        with open(tmp, "w") as f:
            f.write(line + "\n")
        os.replace(tmp, a.ready_file)
    print(line, flush=True)

    while not stop and not sim.stopped.is_set():
        time.sleep(0.2)
    sim.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
