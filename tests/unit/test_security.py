"""Certificates, access tokens, authorization and access rules of secure clusters (essa.security)."""

from __future__ import annotations

import json
import logging
import stat
import time

import pytest

pytest.importorskip("cryptography")

from essa.cli.security import parse_ttl  # noqa: E402
from essa.cluster.authorize import REFUSED, Authorizer, ModuleIndex, Refused  # noqa: E402
from essa.cluster.deployments import DeploymentRegistry  # noqa: E402
from essa.security import (
    acl,
    certs,
    settings,
    tokens,  # noqa: E402
)
from essa.security.tls import TlsError, is_loopback, secure_endpoints, warn_if_exposed  # noqa: E402
from essa.state.memory import MemoryStore  # noqa: E402


@pytest.fixture(scope="module")
def cluster_dir(tmp_path_factory):
    """A CA and a token key pair."""
    directory = tmp_path_factory.mktemp("security")
    certs.create_ca(directory)
    tokens.create_keys(directory)
    return directory


@pytest.fixture(scope="module")
def verifier(cluster_dir):
    return tokens.Verifier(cluster_dir / tokens.PUBLIC_KEY)


def make_token(cluster_dir, **kwargs) -> str:
    return tokens.create(cluster_dir / tokens.PRIVATE_KEY, **kwargs)


# -- certificates -----------------------------------------------------------------------


def test_a_certificate_names_its_role_and_is_signed_by_the_ca(cluster_dir, tmp_path):
    from cryptography import x509

    issued = certs.issue(cluster_dir, "executor", "executor-7", tmp_path / "ex", hosts=["10.1.2.3", "node7"])
    assert (issued.cert.name, issued.key.name) == ("ex.pem", "ex.key")
    assert stat.S_IMODE(issued.key.stat().st_mode) == 0o600  # the private key is its owner's only
    info = certs.describe(issued.cert)
    assert (info.role, info.name, info.issuer) == ("executor", "executor-7", "essa cluster CA")
    assert set(info.hosts) == {"node7", "10.1.2.3"}
    leaf = x509.load_pem_x509_certificate(issued.cert.read_bytes())
    ca = x509.load_pem_x509_certificate((cluster_dir / certs.CA_CERT).read_bytes())
    leaf.verify_directly_issued_by(ca)  # raises if another key signed it


def test_a_ca_is_never_replaced_and_a_missing_one_is_named(cluster_dir, tmp_path):
    with pytest.raises(certs.CertificateError, match="already holds a CA"):
        certs.create_ca(cluster_dir)
    with pytest.raises(certs.CertificateError, match="no CA in .*essa certs init"):
        certs.issue(tmp_path, "client", "c", tmp_path / "c")
    with pytest.raises(certs.CertificateError, match="unknown role 'boss'"):
        certs.issue(cluster_dir, "boss", "b", tmp_path / "b")


# -- tokens -----------------------------------------------------------------------------


def test_a_token_carries_its_grant(cluster_dir, verifier):
    token = make_token(cluster_dir, deployments=["wc"], namespaces=["team-*"], read_only=True, ttl=600)
    grant = verifier.verify(token)
    assert grant.deployments == ("wc",) and grant.namespaces == ("team-*",) and grant.read_only
    assert grant.expires - grant.issued == 600
    assert grant.covers_deployment("wc") and not grant.covers_deployment("wc2")
    assert grant.covers_namespace("team-a") and not grant.covers_namespace("other")
    assert tokens.inspect(token) == grant


def test_an_expired_token_is_refused_with_its_expiry(cluster_dir, verifier):
    token = make_token(cluster_dir, deployments=["wc"], ttl=60, now=time.time() - 3600)
    with pytest.raises(tokens.TokenRefused, match="the token expired at 20"):
        verifier.verify(token)
    fresh = make_token(cluster_dir, deployments=["wc"], ttl=60)
    verifier.verify(fresh)
    with pytest.raises(tokens.TokenRefused, match="expired"):  # also once it is in the cache
        verifier.verify(fresh, now=time.time() + 120)


def _flip(text: str, index: int) -> str:
    return text[:index] + ("A" if text[index] != "A" else "B") + text[index + 1:]


def test_a_tampered_token_is_refused(cluster_dir, verifier):
    token = make_token(cluster_dir, deployments=["wc"], read_only=True)
    prefix, payload, signature = token.split(".")
    # Widen the grant: the same claims with read_only false, signature kept.
    claims = json.loads(tokens._unb64(payload))
    widened = f"{prefix}.{tokens._b64(json.dumps({**claims, 'ro': False, 'd': ['*']}).encode())}.{signature}"
    for forged in (widened, f"{prefix}.{payload}.{_flip(signature, 5)}"):
        with pytest.raises(tokens.TokenRefused, match="signature does not match"):
            verifier.verify(forged)


def test_a_token_of_another_cluster_or_no_token_is_refused(tmp_path, verifier):
    tokens.create_keys(tmp_path)
    other = tokens.create(tmp_path / tokens.PRIVATE_KEY, deployments=["*"])
    with pytest.raises(tokens.TokenRefused, match="not issued by this cluster"):
        verifier.verify(other)
    for missing in (None, ""):
        with pytest.raises(tokens.TokenRefused, match="no token was given"):
            verifier.verify(missing)
    for junk in ("essa1.x.y", "hello", "a.b.c", 42, "essa1." + "A" * 10000):
        with pytest.raises(tokens.TokenRefused, match="malformed"):
            verifier.verify(junk)


def test_token_patterns_and_lifetimes_are_checked(cluster_dir):
    for bad in ("a/b", "", "x" * 64, "a b"):
        with pytest.raises(tokens.TokenError):
            make_token(cluster_dir, deployments=[bad])
    with pytest.raises(tokens.TokenError, match="at least one"):
        make_token(cluster_dir)
    assert parse_ttl("1h") == 3600 and parse_ttl("7d") == 7 * 86400 and parse_ttl("90") == 90


# -- authorization ----------------------------------------------------------------------


def call(namespace: str, token: str | None, module: str = "m" * 64, run: str = "r1", **extra) -> dict:
    return {"namespace": namespace, "token": token, "module": module, "run": run, **extra}


def test_a_deployment_token_allows_its_deployment_only(cluster_dir, verifier):
    authorizer = Authorizer(verifier)
    token = make_token(cluster_dir, deployments=["a"])
    assert authorizer.check_call(call("a", token, deployment="a")).deployments == ("a",)
    with pytest.raises(Refused) as refused:
        authorizer.check_call(call("b", token, deployment="b"))
    assert str(refused.value).startswith(f"{REFUSED}: no valid token for deployment 'b'")
    with pytest.raises(Refused, match="no valid token for deployment 'a': no token was given"):
        authorizer.check_call(call("a", None, deployment="a"))
    with pytest.raises(Refused, match="a run in a fresh namespace .*--namespace '\\*'"):
        authorizer.check_call(call("r1", token, run="r1"))


def test_a_namespace_that_is_not_a_name_is_refused_even_to_a_wildcard(cluster_dir, verifier):
    token = make_token(cluster_dir, namespaces=["*"])
    # "a/data/x"'s keys would land inside namespace "a"'s.
    with pytest.raises(Refused, match="not a valid namespace"):
        Authorizer(verifier).check_call(call("a/data/x", token))


def test_a_deployment_token_runs_only_the_deployments_modules(cluster_dir, verifier):
    registry = DeploymentRegistry(MemoryStore())
    registry.add("a", "1" * 64, 10, ["f"])
    registry.add("b", "2" * 64, 10, ["f"])
    authorizer = Authorizer(verifier, ModuleIndex(registry.versions))
    token = make_token(cluster_dir, deployments=["a"])
    request = call("a", token, module="1" * 64)
    authorizer.check_module(request, authorizer.check_call(request))
    forged = call("a", token, module="2" * 64)  # b's code in a's namespace
    with pytest.raises(Refused, match="module 222222222222 is none of its versions"):
        authorizer.check_module(forged, authorizer.check_call(forged))
    registry.add("a", "2" * 64, 10, ["f"])  # a new version is callable at once
    authorizer.check_module(forged, authorizer.check_call(forged))
    anything = call("ns", make_token(cluster_dir, namespaces=["ns"]), module="3" * 64)
    authorizer.check_module(anything, authorizer.check_call(anything))  # a namespace grant runs any module


def test_control_requests_need_a_covering_writable_token(cluster_dir, verifier):
    authorizer = Authorizer(verifier)
    reader = make_token(cluster_dir, deployments=["a"], read_only=True)
    writer = make_token(cluster_dir, deployments=["a"], namespaces=["ns"])
    for op, fields in [("resolve", {"spec": "a@2"}), ("versions", {"name": "a"}), ("state-get", {"namespace": "a"}),
                       ("state-keys", {"namespace": "a"})]:
        authorizer.check_control(op, {**fields, "token": reader})
    for op, fields, verb in [("deploy", {"name": "a"}, "deploy"), ("remove", {"name": "a"}, "remove"),
                             ("state-merge", {"namespace": "a"}, "write the state of"),
                             ("state-delete", {"namespace": "a"}, "delete keys of")]:
        with pytest.raises(Refused, match=f"read-only: it cannot {verb}"):
            authorizer.check_control(op, {**fields, "token": reader})
        authorizer.check_control(op, {**fields, "token": writer})
    with pytest.raises(Refused, match="no valid token for deployment 'ns'"):
        authorizer.check_control("deploy", {"name": "ns", "token": writer})  # a namespace is not a deployment
    authorizer.check_control("state-merge", {"namespace": "ns", "token": writer})
    with pytest.raises(Refused, match="no valid token for namespace 'b'"):
        authorizer.check_control("state-get", {"namespace": "b", "token": writer})
    grant = authorizer.check_control("list", {"token": reader})
    assert authorizer.visible(grant, [{"name": "a"}, {"name": "b"}]) == [{"name": "a"}]


# -- access rules -------------------------------------------------------------------------


def _rules(config: dict, role: str, flow: str, message: str) -> list[str]:
    ids = next(p["rules"] for p in config["policies"] if p["subjects"] == [role])
    return [k for r in config["rules"] if r["id"] in ids and r["flows"] == [flow] and r["messages"] == [message]
            for k in r["key_exprs"]]


def test_only_executors_announce_executors_and_take_placed_calls():
    config = acl.access_control(acl.profiles())
    assert config["default_permission"] == "deny"
    assert _rules(config, "executor", "ingress", "liveliness_token") == ["essa/live/executor/*"]
    for role in ("client", "admin", "kvs", "routing"):
        assert _rules(config, role, "ingress", "liveliness_token") == []
        assert "essa/executor/*/calls" not in _rules(config, role, "ingress", "declare_subscriber")
        assert _rules(config, role, "ingress", "declare_queryable") == []  # nobody answers in an executor's place
    # Requests, and so tokens, never go to a client: it subscribes to no request topic.
    client_subscribes = _rules(config, "client", "ingress", "declare_subscriber")
    assert not {"essa/scheduler/calls", "essa/executor/*/calls", "essa/**"} & set(client_subscribes)
    assert "essa/scheduler/calls" not in _rules(config, "client", "egress", "put")


def test_plugins_add_the_key_spaces_of_their_roles():
    profiles = acl.profiles([("kvs", {"token": ["anna/live/kvs/**"], "put": ["anna/kvs/*/*"]})])
    config = acl.access_control(profiles)
    assert _rules(config, "kvs", "ingress", "liveliness_token") == ["anna/live/kvs/**"]
    assert _rules(config, "kvs", "egress", "declare_subscriber") == ["anna/kvs/*/*"]  # we tell it where we listen


def test_the_access_rules_are_a_valid_zenoh_configuration():
    zenoh = pytest.importorskip("zenoh")
    from essa.plugins import get_plugin_manager

    rules = acl.access_control(acl.profiles(get_plugin_manager().access()))
    zenoh.Config().insert_json5("access_control", json.dumps(rules))


# -- TLS settings -------------------------------------------------------------------------


def test_tls_endpoints_and_settings():
    assert secure_endpoints(["tcp/127.0.0.1:7447", "tls/[::1]:0"]) == ["tls/127.0.0.1:7447", "tls/[::1]:0"]
    with pytest.raises(TlsError, match="udp/x:1"):
        secure_endpoints(["udp/x:1"])
    assert is_loopback("tcp/127.0.0.1:0") and is_loopback("tcp/[::1]:7447") and is_loopback("tcp/localhost:1")
    assert not is_loopback("tcp/0.0.0.0:7447") and not is_loopback("tcp/[::]:0") and not is_loopback("tcp/10.0.0.1:1")


def test_part_of_the_tls_files_is_one_clear_error(monkeypatch, tmp_path):
    monkeypatch.setattr(settings, "_given", {})
    for name in ("ESSA_TLS_CA", "ESSA_TLS_CERT", "ESSA_TLS_KEY"):
        monkeypatch.delenv(name, raising=False)
    assert settings.tls_files() is None
    monkeypatch.setenv("ESSA_TLS_CA", str(tmp_path / "ca.pem"))
    with pytest.raises(TlsError, match="missing: --tls-cert, --tls-key"):
        settings.tls_files()


def test_listening_beyond_loopback_without_tls_warns_once(caplog):
    with caplog.at_level(logging.WARNING, logger="essa.security"):
        warn_if_exposed(["tcp/127.0.0.1:7447", "tls/0.0.0.0:7447", "tcp/0.0.0.0:17447"])
        warn_if_exposed(["tcp/0.0.0.0:17447"])
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and "listening on tcp/0.0.0.0:17447 without TLS" in lines[0]
