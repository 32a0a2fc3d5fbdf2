#!/usr/bin/env python3
"""The Envoy configuration of docs/gateway.md and the README, read against Envoy's own v3 API.

Usage:
    python envoy_config.py --repo DIR --header NAME [--header NAME ...]

No registry this project's CI reaches carries an Envoy build, so Envoy itself cannot run here.
What can be checked is that the configuration we tell operators to paste is one Envoy accepts
as far as its API goes: the snippets are put into a whole bootstrap (a listener whose HTTP
connection manager has the documented filters in front of an upstream, the documented
`vedauth` cluster beside it) and parsed into `envoy.config.bootstrap.v3.Bootstrap` with
Envoy's generated protobuf classes (PyPI's xds-protos, made from envoyproxy/data-plane-api by
the gRPC project). An unknown field, a wrong type, a bad duration or an unknown `@type` fails
the parse. Each message is then checked against the validation rules Envoy's API declares
(protoc-gen-validate: a cluster name not empty, a timeout above zero and the like), which Envoy
applies when it loads a configuration. Then the parsed message is held to what vedauth needs:
the check's path prefix, a cluster the filter names that exists, the router last, TLS to the
check, and response headers that let through every NAME given (the Rust test passes the
`x-vedauth-*` headers a real check answered). The README's shorter snippet must be the same
filter as the guide's.

Three broken copies must fail the parse and one the validation rules, so that these checks are
seen to be able to fail. Prints one line per check and `envoy_config: N passed, N failed`;
exit 0 only if all passed.
"""

import argparse
import copy
import re
import sys
from pathlib import Path

import yaml
from google.protobuf import json_format, symbol_database
from protoc_gen_validate.validator import ValidationFailed, validate

from checks import Checks

# Importing the modules registers their types, which `@type` in the snippets resolves to.
from envoy.config.bootstrap.v3 import bootstrap_pb2
from envoy.extensions.filters.http.ext_authz.v3 import ext_authz_pb2
from envoy.extensions.filters.http.router.v3 import router_pb2  # noqa: F401
from envoy.extensions.filters.network.http_connection_manager.v3 import (  # noqa: F401
    http_connection_manager_pb2,
)
from envoy.extensions.transport_sockets.tls.v3 import tls_pb2

HCM = (
    "type.googleapis.com/envoy.extensions.filters.network."
    "http_connection_manager.v3.HttpConnectionManager"
)
EXT_AUTHZ = "envoy.filters.http.ext_authz"
ROUTER = "envoy.filters.http.router"

tally = Checks("envoy_config")
check = tally.check


def yaml_blocks(text, heading):
    """The ```yaml blocks of a markdown section (from `heading` to the next heading of level 2
    or more: a YAML comment starts with a single `#`)."""
    start = text.index(heading)
    nxt = re.search(r"^#{2,6} ", text[start + len(heading):], re.M)
    section = text[start: start + len(heading) + nxt.start()] if nxt else text[start:]
    return re.findall(r"^```yaml\n(.*?)^```", section, re.S | re.M)


def bootstrap(http_filters, clusters):
    """A whole Envoy bootstrap: a listener on loopback whose connection manager runs the
    documented filters in front of an upstream cluster `api`, and the documented clusters."""
    upstream = {
        "name": "api",
        "type": "STATIC",
        "load_assignment": {
            "cluster_name": "api",
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {
                "socket_address": {"address": "127.0.0.1", "port_value": 8080}}}}]}],
        },
    }
    hcm = {
        "@type": HCM,
        "stat_prefix": "api",
        "route_config": {"virtual_hosts": [{
            "name": "api",
            "domains": ["*"],
            "routes": [{"match": {"prefix": "/"}, "route": {"cluster": "api"}}],
        }]},
        "http_filters": http_filters,
    }
    return {"static_resources": {
        "listeners": [{
            "name": "api",
            "address": {"socket_address": {"address": "127.0.0.1", "port_value": 10000}},
            "filter_chains": [{"filters": [{
                "name": "envoy.filters.network.http_connection_manager",
                "typed_config": hcm,
            }]}],
        }],
        "clusters": list(clusters) + [upstream],
    }}


def parse(doc):
    return json_format.ParseDict(doc, bootstrap_pb2.Bootstrap())


def unpack(any_msg, cls):
    out = cls()
    if not any_msg.Unpack(out):
        raise ValueError(f"not a {cls.DESCRIPTOR.full_name}: {any_msg.type_url}")
    return out


def unpack_any(any_msg):
    """An `Any` as the message its type URL names (registered by the imports above)."""
    name = any_msg.type_url.rsplit("/", 1)[-1]
    out = symbol_database.Default().GetSymbol(name)()
    any_msg.Unpack(out)
    return out


def rules(m):
    """(ok, detail) of protoc-gen-validate's rules for one message."""
    try:
        validate(m)
        return True, ""
    except ValidationFailed as e:
        return False, str(e)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repo", required=True, type=Path)
    ap.add_argument("--header", action="append", default=[])
    a = ap.parse_args()

    guide = yaml_blocks((a.repo / "docs/gateway.md").read_text(), "## Envoy")
    readme = yaml_blocks((a.repo / "README.md").read_text(), "Envoy (`ext_authz`")
    check("docs/gateway.md has one Envoy block", len(guide) == 1, f"{len(guide)} blocks")
    check("the README has its Envoy snippet", len(readme) >= 1, "none")
    if len(guide) != 1 or not readme:
        return tally.summary()
    doc = yaml.safe_load(guide[0])
    snippet = yaml.safe_load(readme[0])

    try:
        boot = parse(bootstrap(doc["http_filters"], doc["clusters"]))
        check("the guide's filters and cluster parse as an Envoy v3 bootstrap", True)
    except (json_format.ParseError, KeyError, TypeError) as e:
        check("the guide's filters and cluster parse as an Envoy v3 bootstrap", False, str(e))
        return tally.summary()

    hcm_any = boot.static_resources.listeners[0].filter_chains[0].filters[0].typed_config
    hcm = unpack(hcm_any, http_connection_manager_pb2.HttpConnectionManager)
    names = [f.name for f in hcm.http_filters]
    # The validation rules do not reach inside an `Any`: each typed config is checked unpacked.
    checked = [("the bootstrap", boot), ("the connection manager", hcm)]
    checked += [(f"filter {f.name}", f.typed_config) for f in hcm.http_filters]
    checked += [(f"cluster {c.name}", c) for c in boot.static_resources.clusters]
    checked += [(f"cluster {c.name}'s TLS", c.transport_socket.typed_config)
                for c in boot.static_resources.clusters if c.HasField("transport_socket")]
    for what, m in checked:
        if m.DESCRIPTOR.full_name == "google.protobuf.Any":
            m = unpack_any(m)
        check(f"{what} meets the API's validation rules", *rules(m))
    check("the router is the last HTTP filter, after ext_authz",
          names[-1:] == [ROUTER] and EXT_AUTHZ in names, str(names))
    authz = unpack(hcm.http_filters[names.index(EXT_AUTHZ)].typed_config, ext_authz_pb2.ExtAuthz)
    svc = authz.http_service
    check("ext_authz speaks the v3 API over HTTP",
          authz.WhichOneof("services") == "http_service"
          and authz.transport_api_version == 2,  # V3
          f"{authz.WhichOneof('services')}, {authz.transport_api_version}")
    check("the check's path prefix is /gateway/check", svc.path_prefix == "/gateway/check",
          svc.path_prefix)
    check("the check has a timeout", svc.server_uri.timeout.ToNanoseconds() > 0,
          str(svc.server_uri.timeout))
    clusters = {c.name: c for c in boot.static_resources.clusters}
    target = clusters.get(svc.server_uri.cluster)
    check("the filter's cluster is defined", target is not None, svc.server_uri.cluster)
    if target is not None:
        tls = target.transport_socket
        ok = tls.name == "envoy.transport_sockets.tls"
        if ok:
            ctx = unpack(tls.typed_config, tls_pb2.UpstreamTlsContext)
            ca = ctx.common_tls_context.validation_context.trusted_ca
            ok = bool(ctx.sni) and bool(ca.filename)
        check("the cluster reaches vedauth over TLS with its CA and SNI", ok, tls.name)
    patterns = authz.http_service.authorization_response.allowed_upstream_headers.patterns

    def passes(header):
        # Envoy compares header names in lower case.
        h = header.lower()
        return any(
            (p.exact and h == p.exact.lower()) or (p.prefix and h.startswith(p.prefix.lower()))
            for p in patterns
        )

    check("headers given to compare", bool(a.header), "no --header")
    for h in a.header:
        check(f"{h} is passed upstream", passes(h), str([p.prefix or p.exact for p in patterns]))

    try:
        filt = json_format.ParseDict(snippet[0], http_connection_manager_pb2.HttpFilter())
        same = filt.name == EXT_AUTHZ and unpack(filt.typed_config, ext_authz_pb2.ExtAuthz) == authz
        check("the README's filter parses and is the guide's", same, "they differ")
    except (json_format.ParseError, KeyError, TypeError, ValueError) as e:
        check("the README's filter parses and is the guide's", False, str(e))

    # Broken copies: each must be refused, or the parse above proves nothing.
    def broken(name, change):
        d = copy.deepcopy(doc)
        change(d)
        try:
            parse(bootstrap(d["http_filters"], d["clusters"]))
            check(f"refused: {name}", False, "parsed")
        except json_format.ParseError:
            check(f"refused: {name}", True)

    def misspelt(d):
        s = d["http_filters"][0]["typed_config"]["http_service"]
        s["path_prefx"] = s.pop("path_prefix")

    def bad_timeout(d):
        d["http_filters"][0]["typed_config"]["http_service"]["server_uri"]["timeout"] = "1 sec"

    def unknown_type(d):
        d["http_filters"][0]["typed_config"]["@type"] += "Typo"

    empty = ext_authz_pb2.ExtAuthz()
    empty.CopyFrom(authz)
    empty.http_service.server_uri.cluster = ""
    ok, _ = rules(empty)
    check("refused by the rules: a filter naming an empty cluster", not ok, "passed")

    broken("a misspelt field", misspelt)
    broken("a duration Envoy cannot read", bad_timeout)
    broken("an unknown @type", unknown_type)
    return tally.summary()


if __name__ == "__main__":
    sys.exit(main())
