"""Concurrency: ~1000 simultaneous requests, and racing MFA creates."""
import threading

from tests.conftest import IDENTITIES
from tests.ctrlsim.__main__ import raise_fd_limit
from tests.ctrlsim.client import ZitiClient


def test_a_thousand_concurrent_requests(sim):
    raise_fd_limit()
    n = 999
    barrier = threading.Barrier(n, timeout=30)
    results = [None] * n
    urls = [sim.url(nid) for nid in sim.node_ids]

    def one(i):
        c = ZitiClient(urls[i % 3], timeout=30)
        try:
            barrier.wait()
            results[i] = c.version().status
        except Exception as e:  # recorded, asserted below
            results[i] = repr(e)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert results == [200] * n, [r for r in results if r != 200][:5]
    assert sim.control.count(path="/version") == n


def test_racing_creates_for_one_identity_one_wins(sim):
    c = ZitiClient(sim.url("ctrl1"))
    c.oidc_login("carol", IDENTITIES["carol"]).expect(200)
    out = []
    lock = threading.Lock()

    def go(nid):
        o = ZitiClient(sim.url(nid))
        o.access_token = c.access_token
        r = o.mfa_create()
        with lock:
            out.append((r.status, r.error_code))

    threads = [threading.Thread(target=go, args=(nid,)) for nid in sim.node_ids * 4]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(s for s, _ in out) == [201] + [409] * 11, out
    sim.control.wait_applied(timeout=5)
    for nid in sim.node_ids:
        assert sim.control.mfa_on(nid, c.identity_id) is not None
