"""Keeping clients on the proxy (issue 9): the controller addresses in
/controllers (client and management API) and in /version's apiBaseUrls are
rewritten to quorumgate's public URL, a Location that points at a
controller is rewritten, and ziti-ctrl-address never reaches the client.
"""
import urllib.parse

from tests.integration.routing_support import ZitiClient, client_with_token, oidc_login
from tests.support.procs import wait_until


def _origin(url):
    u = urllib.parse.urlsplit(url)
    return "%s://%s" % (u.scheme, u.netloc)


def _controller_urls(body):
    return [e["url"] for c in body["data"] for lst in c["apiAddresses"].values() for e in lst]


def _version_urls(body):
    return [u for b in body["data"]["apiVersions"].values() for v in b.values() for u in v.get("apiBaseUrls") or []]


def _check_everything(qg, sim, public):
    c = ZitiClient(qg.url)
    admin_login = oidc_login(c, c, "admin", "admin-pw")
    assert admin_login.ok, admin_login.failed_step
    admin = client_with_token(qg.url, None, admin_login.tokens["access_token"])
    direct = client_with_token(sim.url("ctrl1"), sim.ca, admin_login.tokens["access_token"])
    ctrl_origins = {_origin(sim.url(n)) for n in sim.node_ids}

    for api in ("client", "management"):
        # what the controllers say ...
        d = direct.controllers(api).expect(200).json()
        assert {_origin(u) for u in _controller_urls(d)} == ctrl_origins
        # ... and what a client of quorumgate sees, from every controller
        for _ in range(6):
            r = admin.controllers(api).expect(200)
            body = r.json()
            urls = _controller_urls(body)
            assert len(urls) >= 2 * len(sim.node_ids), urls
            assert {_origin(u) for u in urls} == {public}, urls
            # only the origin changes: paths and the rest of the body stay
            assert sorted(urllib.parse.urlsplit(u).path for u in urls) == \
                sorted(urllib.parse.urlsplit(u).path for u in _controller_urls(d))
            assert [x["id"] for x in body["data"]] == [x["id"] for x in d["data"]]
            assert int(r.header("content-length")) == len(r.body)
            assert r.header("ziti-ctrl-address") is None

    for path in ("/version", "/edge/client/v1/version", "/edge/management/v1/version"):
        d = direct.request("GET", path, auth=False).expect(200).json()
        assert {_origin(u) for u in _version_urls(d)} == {_origin(sim.url("ctrl1"))}
        for _ in range(3):
            r = admin.request("GET", path, auth=False).expect(200)
            body = r.json()
            assert {_origin(u) for u in _version_urls(body)} == {public}, body
            assert body["data"]["apiVersions"]["edge-client"]["v1"]["path"] == "/edge/client/v1"
            assert r.header("ziti-ctrl-address") is None

    # Location: the controller's callback redirect is absolute (it names
    # the controller); through quorumgate it names quorumgate
    for _ in range(3):
        lg = oidc_login(c, c, "alice", "alice-pw")
        assert lg.ok, lg.failed_step
        steps = dict(lg.steps)
        assert steps["authorize"].header("location").startswith("/oidc/login/username?authRequestID=")
        cb = steps["password"].header("location")
        assert cb.startswith(public + "/oidc/authorize/callback?id="), cb
        assert urllib.parse.parse_qs(urllib.parse.urlsplit(cb).query)["id"] == [lg.auth_request_id]
        # the client's own redirect_uri is not touched
        assert steps["callback"].header("location").startswith("http://127.0.0.1:20202/auth/callback?")
        for _, r in lg.steps:
            assert r.header("ziti-ctrl-address") is None


def test_addresses_rewritten_to_the_derived_public_url(quorumgate, sim):
    # the simulator announces ziti-ctrl-address on every answer
    sim.control.config(newAddress="127.0.0.1:{port}")
    assert ZitiClient(sim.url("ctrl2")).version().header("ziti-ctrl-address")
    qg = quorumgate(sim=sim)            # no public_url: from the first listener
    assert qg.config["listeners"][0]["address"].endswith(":0")
    _check_everything(qg, sim, qg.url)
    # and still after a configuration reload
    qg.sighup()
    wait_until(lambda: qg.metrics().value("quorumgate_config_reloads_total", result="success") == 1,
               timeout=10, what="the reload")
    body = ZitiClient(qg.url).version().expect(200).json()
    assert {_origin(u) for u in _version_urls(body)} == {qg.url}, body


def test_addresses_rewritten_to_the_configured_public_url(quorumgate, sim_factory):
    sim = sim_factory(tls=True)
    sim.control.config(newAddress="ctrl.ziti.test:{port}")
    qg = quorumgate({"public_url": "https://ziti.example.test:8443/"}, sim=sim)
    _check_everything(qg, sim, "https://ziti.example.test:8443")
