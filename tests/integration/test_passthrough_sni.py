"""The SNI split (issue 14): one TLS port, the ClientHello's server name
decides.  passthrough.sni.names go to the leader untouched (the client's TLS
session is the controller's); every other name, and a hello without one,
is served by the HTTPS front as usual."""
import http.client
import socket
import ssl

from tests.integration.core_support import wait_leader_known
from tests.integration.pt_support import pt_lines, wait_pt_lines


def _qg(quorumgate, certs, **pt):
    tls = {"cert": certs["cert"], "key": certs["key"]}
    qg = quorumgate({"listeners": [{"address": "127.0.0.1:0", "tls": tls}],
                     "passthrough": dict({"sni": {"listener": 0, "names": ["CTRL.ziti.test"]}}, **pt)})
    wait_leader_known(qg)
    return qg


def _port(qg):
    return int(qg.client_addresses[0].rsplit(":", 1)[1])


def _get(qg, sni, path):
    """GET over a new TLS connection to the listener's port with this SNI (None: none)."""
    port = _port(qg)
    ctx = ssl.create_default_context(cafile=qg.ca)
    conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=10, context=ctx)
    if sni:
        conn.sock = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=10),
                                    server_hostname=sni)
    try:
        conn.request("GET", path)
        r = conn.getresponse()
        r.read()
        return r.status, dict((k.lower(), v) for k, v in r.getheaders())
    finally:
        conn.close()


def test_sni_names_are_spliced_to_the_leader_the_rest_is_the_http_front(quorumgate, certs):
    qg = _qg(quorumgate, certs)
    leader = qg.sim.control.leader()
    # the passthrough name: the leader itself answers the raft check (200), untouched
    for _ in range(3):
        status, headers = _get(qg, "ctrl.ziti.test", "/health-checks/controller/raft")
        assert status == 200 and "quorumgate-controller" not in headers, (status, headers)
    lines = wait_pt_lines(qg, 3)
    assert {e["controller"] for e in lines} == {leader}, lines
    assert all(e["bytes_to_controller"] > 0 and e["bytes_to_client"] > 0 for e in lines)
    # another name, and no name at all (an IP address): the HTTPS front
    for sni in ("localhost", None):
        status, headers = _get(qg, sni, "/edge/client/v1/version")
        assert status == 200 and headers.get("quorumgate-controller"), (sni, status, headers)
    assert len(pt_lines(qg)) == 3


def test_sni_split_survives_garbage_and_silence(quorumgate, certs):
    qg = _qg(quorumgate, certs)
    port = _port(qg)
    # plain HTTP on the TLS port: handed to the HTTPS front, which drops it
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    s.settimeout(5)
    try:
        s.recv(100)
    except OSError:
        pass
    s.close()
    # a client that connects and says nothing does not block the others
    quiet = socket.create_connection(("127.0.0.1", port), timeout=5)
    assert _get(qg, "ctrl.ziti.test", "/health-checks/controller/raft")[0] == 200
    assert _get(qg, "localhost", "/edge/client/v1/version")[0] == 200
    quiet.close()
    wait_pt_lines(qg, 1)
