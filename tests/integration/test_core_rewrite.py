"""Proxy core, rewriting (issue 2): what would send clients around the
proxy.  GET .../controllers lists only quorumgate's public URL in
apiAddresses, /version its apiBaseUrls, Location headers that point at a
controller are rewritten, ziti-ctrl-address is dropped.  Each test also
looks at the simulator's own answer, so it fails if nothing needs doing."""
import json

from tests.ctrlsim.client import ZitiClient
from tests.integration.core_support import call, echo_factory, qg_over_echo, wait_leader_known  # noqa: F401

PUBLIC = "https://ziti.example.test:8443"


def _token(sim, who="alice"):
    c = ZitiClient(sim.url(sim.node_ids[0]), ca_file=sim.ca)
    c.oidc_login(who, who + "-pw")
    return {"Authorization": "Bearer " + c.access_token}


def _path(url):
    """What follows the origin of an absolute URL."""
    rest = url.split("://", 1)[1]
    i = rest.find("/")
    return rest[i:] if i >= 0 else ""


def _api_urls(doc):
    return [e["url"] for c in doc["data"] for lst in c["apiAddresses"].values() for e in lst]


def test_controllers_list_only_the_public_url(quorumgate):
    qg = quorumgate({"public_url": PUBLIC})
    sim = qg.sim
    wait_leader_known(qg)
    for api, who in (("client", "alice"), ("management", "admin")):
        path = "/edge/%s/v1/controllers" % api
        auth = _token(sim, who)
        direct = call(sim.url("ctrl1"), "GET", path, headers=auth, ca=sim.ca)
        assert direct.status == 200
        assert any("127.0.0.1" in u for u in _api_urls(direct.json())), "the simulator names its nodes"
        r = call(qg, "GET", path, headers=auth, ca=qg.ca)
        assert r.status == 200, r.body
        doc = r.json()
        urls = _api_urls(doc)
        assert len(urls) == len(_api_urls(direct.json())) and urls
        for u in urls:
            assert u.startswith(PUBLIC + "/"), u
        # paths are kept: only the origin changes
        assert sorted(u[len(PUBLIC):] for u in urls) == sorted(_path(u) for u in _api_urls(direct.json()))
        # everything else in the document is as the controller sent it
        assert [c["id"] for c in doc["data"]] == sim.node_ids
        assert doc["meta"]["pagination"]["totalCount"] == 3
        assert int(r.header("Content-Length")) == len(r.body)


def test_version_api_base_urls_are_the_public_url(quorumgate):
    qg = quorumgate({"public_url": PUBLIC})
    sim = qg.sim
    wait_leader_known(qg)
    for path in ("/version", "/edge/client/v1/version", "/edge/management/v1/version"):
        direct = call(sim.url("ctrl2"), "GET", path, ca=sim.ca).json()
        assert any("127.0.0.1" in u for b in direct["data"]["apiVersions"].values() for v in b.values()
                   for u in v["apiBaseUrls"])
        r = call(qg, "GET", path, ca=qg.ca)
        assert r.status == 200
        doc = r.json()
        seen = 0
        for name, binding in doc["data"]["apiVersions"].items():
            for ver, v in binding.items():
                dv = direct["data"]["apiVersions"][name][ver]
                assert v["path"] == dv["path"]
                assert len(v["apiBaseUrls"]) == len(dv["apiBaseUrls"])
                for u, du in zip(v["apiBaseUrls"], dv["apiBaseUrls"]):
                    assert u == PUBLIC + _path(du), (u, du)
                    seen += 1
        assert seen >= 4
        assert doc["data"]["version"] == direct["data"]["version"]


def test_ziti_ctrl_address_is_dropped(quorumgate):
    qg = quorumgate({"public_url": PUBLIC})
    sim = qg.sim
    wait_leader_known(qg)
    sim.control.config(newAddress="127.0.0.1:{port}")
    direct = call(sim.url("ctrl1"), "GET", "/edge/client/v1/version", ca=sim.ca)
    assert direct.header("ziti-ctrl-address"), direct.header_list
    for _ in range(6):
        r = call(qg, "GET", "/edge/client/v1/version", ca=qg.ca)
        assert r.status == 200
        assert r.header("ziti-ctrl-address") is None, r.header_list
    r = call(qg, "POST", "/edge/client/v1/authenticate?method=password",
             body=b'{"username":"alice","password":"alice-pw"}', headers={"Content-Type": "application/json"},
             ca=qg.ca)
    assert r.status == 200 and r.header("ziti-ctrl-address") is None


def test_location_headers_pointing_at_a_controller_are_rewritten(quorumgate, echo_factory):
    cl = echo_factory(1)
    up = cl.upstreams[0]
    me = "http://127.0.0.1:%d" % up.port
    cases = {
        "/to-controller": (me + "/edge/client/v1/x?y=1#f", PUBLIC + "/edge/client/v1/x?y=1#f"),
        "/to-server-name": ("http://ctrl.ziti.test:%d/oidc/login?authRequestID=a" % up.port,
                            PUBLIC + "/oidc/login?authRequestID=a"),
        "/to-root": (me, PUBLIC),
        "/elsewhere": ("https://app.example.com/cb?code=1", "https://app.example.com/cb?code=1"),
        "/same-host-other-port": ("http://127.0.0.1:1/x", "http://127.0.0.1:1/x"),
        "/relative": ("/oidc/login/username?authRequestID=r", "/oidc/login/username?authRequestID=r"),
    }
    for path, (loc, _) in cases.items():
        up.respond(path, status=302, headers=[("Location", loc)], body=b"")
    qg = qg_over_echo(quorumgate, cl, {"public_url": PUBLIC,
                                       "upstream": {"tls": {"server_name": "ctrl.ziti.test"}}})
    for path, (_, want) in cases.items():
        r = call(qg, "GET", path)
        assert r.status == 302
        assert r.header_all("Location") == [want], (path, r.header_list)


def test_rewriting_keeps_a_body_that_is_not_the_expected_shape(quorumgate, echo_factory):
    cl = echo_factory(1)
    up = cl.upstreams[0]
    odd = b'{"data":{"unexpected":true},"meta":{}}'
    up.respond("/edge/client/v1/controllers", status=200, headers=[("Content-Type", "application/json")], body=odd)
    up.respond("/version", status=200, headers=[("Content-Type", "text/plain")], body=b"not json")
    qg = qg_over_echo(quorumgate, cl, {"public_url": PUBLIC})
    r = call(qg, "GET", "/edge/client/v1/controllers")
    assert r.status == 200 and json.loads(r.body) == json.loads(odd)
    r = call(qg, "GET", "/version")
    assert r.status == 200 and r.body == b"not json"


def test_rewritten_answers_are_not_left_compressed(quorumgate, echo_factory):
    # a client asking for gzip must not get the controllers' addresses back
    # in a body quorumgate could not read
    import gzip
    cl = echo_factory(1)
    up = cl.upstreams[0]
    doc = {"data": [{"id": "ctrl1", "apiAddresses": {"edge-client": [
        {"url": up.url + "/edge/client/v1", "version": "v1"}]}}], "meta": {}}
    plain = json.dumps(doc).encode()

    def answer(rec):
        enc = " ".join(v for k, v in rec["headers"] if k.lower() == "accept-encoding")
        if "gzip" in enc:
            return {"status": 200, "headers": [("Content-Type", "application/json"), ("Content-Encoding", "gzip"),
                                               ("Vary", "Accept-Encoding")], "body": gzip.compress(plain)}
        return {"status": 200, "headers": [("Content-Type", "application/json")], "body": plain}
    up.respond("/edge/client/v1/controllers", answer)
    qg = qg_over_echo(quorumgate, cl, {"public_url": PUBLIC})
    r = call(qg, "GET", "/edge/client/v1/controllers", headers={"Accept-Encoding": "gzip, deflate"})
    assert r.status == 200
    body = gzip.decompress(r.body) if r.header("Content-Encoding") == "gzip" else r.body
    assert up.url.encode() not in body
    assert _api_urls(json.loads(body)) == [PUBLIC + "/edge/client/v1"]
    # other answers keep the client's Accept-Encoding
    call(qg, "GET", "/edge/client/v1/services", headers={"Accept-Encoding": "gzip"})
    assert [v for k, v in up.last()["headers"] if k.lower() == "accept-encoding"] == ["gzip"]
