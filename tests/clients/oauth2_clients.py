#!/usr/bin/env python3
"""vedauth's OAuth 2.0 face driven by two generic OAuth 2.0 client libraries from PyPI.

Usage:
    python oauth2_clients.py --url https://127.0.0.1:PORT --ca CA.pem --client-id ID \
        --secret-file FILE --user NAME --password-file FILE \
        [--jwt-key PEM --jwt-kid KID --jwt-issuer ISS --jwt-subject SUB --jwt-client-id ID]

Run it with the interpreter printed by scripts/client-venv (which pins authlib and
requests-oauthlib). The server must have the application ID (with the client secret in FILE and
scope `certificate:manage,revoke;configuration`) and a rule admitting NAME. With the --jwt-*
options it also needs AuthorizeByJwt on, the public application of --jwt-client-id admitting
the user, and a JWT mapping for ISS (keys: the public half of PEM under KID) whose PurposeMatch
is the token endpoint's URL (the `aud` authlib puts in its assertions) and which maps SUB to
NAME.

Nothing here speaks HTTP by hand except reading the metadata document: authlib's
OAuth2Session and requests-oauthlib's OAuth2Session (oauthlib underneath) get tokens by
password, refresh and client credentials, introspect and revoke them, and meet the RFC 6749
§5.2 errors as their own exception types; authlib's AssertionSession signs RFC 7523 assertions
and trades them for tokens (jwt-bearer). Prints one line per check and a closing
`oauth2_clients: N passed, N failed` line; exit 0 only if every check passed.
"""

import argparse
import os
import sys

import requests
from authlib.integrations.requests_client import AssertionSession
from authlib.integrations.requests_client import OAuth2Session as AuthlibSession
from authlib.oauth2.base import OAuth2Error as AuthlibAssertionError
from authlib.integrations.base_client.errors import OAuthError as AuthlibError
from oauthlib.oauth2 import BackendApplicationClient, LegacyApplicationClient
from oauthlib.oauth2.rfc6749 import errors as oauth_errors
from requests.auth import HTTPBasicAuth
from requests_oauthlib import OAuth2Session as OauthlibSession

from checks import Checks

SCOPE = "certificate:manage configuration"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"


def expect(cond, what):
    if not cond:
        raise AssertionError(what)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--ca", required=True)
    ap.add_argument("--client-id", required=True)
    ap.add_argument("--secret-file", required=True)
    ap.add_argument("--user", required=True)
    ap.add_argument("--password-file", required=True)
    ap.add_argument("--jwt-key", help="PEM private key that signs the JWT assertions")
    ap.add_argument("--jwt-kid")
    ap.add_argument("--jwt-issuer")
    ap.add_argument("--jwt-subject")
    ap.add_argument("--jwt-client-id")
    a = ap.parse_args()
    checks = Checks("oauth2_clients")
    check = checks.run
    # authlib's session passes verify=True on its own requests: requests then takes the bundle
    # from the environment.
    os.environ["REQUESTS_CA_BUNDLE"] = a.ca
    secret = open(a.secret_file).read().strip()
    password = open(a.password_file).read().strip()
    base = a.url.rstrip("/")
    meta = {}

    def metadata():
        r = requests.get(f"{base}/.well-known/oauth-authorization-server", verify=a.ca)
        expect(r.status_code == 200, r.text)
        meta.update(r.json())
        expect(meta["issuer"] == base, meta)
        for k in ("token_endpoint", "introspection_endpoint", "revocation_endpoint"):
            expect(meta[k].startswith(base + "/oauth2/"), meta)
        expect("client_credentials" in meta["grant_types_supported"], meta)

    check("metadata document (RFC 8414)", metadata)
    if not meta:
        return checks.summary()
    token_url = meta["token_endpoint"]
    introspect_url = meta["introspection_endpoint"]
    revoke_url = meta["revocation_endpoint"]
    verify_url = f"{base}/vedauth/authorize/verify"
    state = {}

    def authlib_session(method="client_secret_basic", client_secret=secret, **kw):
        s = AuthlibSession(
            a.client_id, client_secret, token_endpoint_auth_method=method, **kw
        )
        s.verify = a.ca
        return s

    # ---- authlib ----------------------------------------------------------------------
    def authlib_password():
        s = authlib_session(scope=SCOPE)
        tok = s.fetch_token(
            token_url, grant_type="password", username=a.user, password=password
        )
        expect(tok["token_type"] == "Bearer", tok)
        expect(tok["access_token"].endswith("=="), tok)
        expect(tok["scope"] == SCOPE, tok)
        expect(tok.get("refresh_token"), tok)
        # The session now sends the token as a bearer token: the VEDauth face accepts it.
        r = s.get(verify_url)
        expect(r.status_code == 200, r.text)
        state["authlib"] = tok

    check("authlib: password grant, Basic client authentication", authlib_password)

    def authlib_refresh():
        s = authlib_session()
        old = state["authlib"]
        tok = s.refresh_token(token_url, refresh_token=old["refresh_token"])
        expect(tok["access_token"] != old["access_token"], tok)
        r = requests.get(
            verify_url, headers={"Authorization": f"Bearer {old['access_token']}"}, verify=a.ca
        )
        expect(r.status_code == 401, "the rotated access token still works")
        state["authlib"] = tok

    check("authlib: refresh_token grant rotates the pair", authlib_refresh)

    def authlib_client_credentials():
        s = authlib_session("client_secret_post", scope="certificate")
        tok = s.fetch_token(token_url, grant_type="client_credentials")
        expect(tok["scope"] == "certificate", tok)
        expect("refresh_token" not in tok, tok)
        state["cc"] = tok

    check("authlib: client_credentials grant, client_secret_post", authlib_client_credentials)

    def authlib_introspect():
        s = authlib_session()
        r = s.introspect_token(introspect_url, token=state["authlib"]["access_token"])
        j = r.json()
        expect(r.status_code == 200 and j["active"] is True, r.text)
        expect(j["client_id"] == a.client_id, j)
        expect(j["username"] == f"local:{a.user}", j)
        expect("certificate:manage" in j["scope"].split(), j)
        r = s.introspect_token(
            introspect_url,
            token=state["authlib"]["refresh_token"],
            token_type_hint="refresh_token",
        )
        expect(r.json()["active"] is True and r.json()["token_use"] == "refresh_token", r.text)
        r = s.introspect_token(introspect_url, token=state["cc"]["access_token"])
        expect(r.json()["sub"] == f"client:{a.client_id}", r.text)

    check("authlib: introspection (RFC 7662)", authlib_introspect)

    def authlib_revoke():
        s = authlib_session()
        r = s.revoke_token(revoke_url, token=state["authlib"]["refresh_token"],
                           token_type_hint="refresh_token")
        expect(r.status_code == 200, r.text)
        for t in (state["authlib"]["access_token"], state["authlib"]["refresh_token"]):
            r = s.introspect_token(introspect_url, token=t)
            expect(r.json() == {"active": False}, r.text)
        # Unknown tokens: 200 as well (RFC 7009 §2.2).
        r = s.revoke_token(revoke_url, token="AAAAAAAAAAAAAAAAAAAAAA==")
        expect(r.status_code == 200, r.text)

    check("authlib: revocation (RFC 7009) revokes the grant", authlib_revoke)

    def authlib_errors():
        cases = [
            ("bad secret", authlib_session(client_secret="wrong"),
             dict(grant_type="client_credentials"), "invalid_client"),
            ("unknown client", AuthlibSession("nobody", "x", token_endpoint_auth_method="client_secret_basic"),
             dict(grant_type="client_credentials"), "invalid_client"),
            ("bad password", authlib_session(scope=SCOPE),
             dict(grant_type="password", username=a.user, password="wrong-password"), "invalid_grant"),
            ("unsupported grant type", authlib_session(),
             dict(grant_type="authorization_code", code="x"), "unsupported_grant_type"),
            ("bad scope", authlib_session(scope="nosuchscope"),
             dict(grant_type="password", username=a.user, password=password), "invalid_scope"),
        ]
        for name, s, kw, want in cases:
            s.verify = a.ca
            try:
                s.fetch_token(token_url, **kw)
            except AuthlibError as e:
                expect(e.error == want, f"{name}: {e.error} ({e.description})")
                continue
            raise AssertionError(f"{name}: no error")

    check("authlib: RFC 6749 §5.2 errors", authlib_errors)

    # ---- authlib: RFC 7523 jwt-bearer -------------------------------------------------
    def assertion_session(key, **kw):
        # audience defaults to the token endpoint's URL, as RFC 7523 §3 suggests.
        return AssertionSession(
            token_url, issuer=a.jwt_issuer, subject=a.jwt_subject, client_id=a.jwt_client_id,
            scope="certificate:manage", key=key, alg="RS256", header={"kid": a.jwt_kid},
            verify=a.ca, **kw,
        )

    def authlib_jwt_bearer():
        expect(JWT_BEARER in meta["grant_types_supported"], meta)
        s = assertion_session(open(a.jwt_key).read())
        # The session gets its token on first use, then sends it as a bearer token.
        r = s.get(verify_url)
        expect(r.status_code == 200, r.text)
        v = r.json()
        expect(v["application"] == a.jwt_client_id and v["scope"] == "certificate:manage", v)
        tok = s.token
        expect(tok["token_type"] == "Bearer" and tok["scope"] == "certificate:manage", tok)
        # Each fetch signs a new assertion (new jti): a second one is not a replay.
        again = s.refresh_token()
        expect(again["access_token"] != tok["access_token"], again)

    def authlib_jwt_bearer_errors():
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa

        other = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        cases = [
            ("another audience", assertion_session(open(a.jwt_key).read(), audience="someone-else")),
            ("signed by another key", assertion_session(other)),
        ]
        for name, s in cases:
            try:
                s.refresh_token()
            except AuthlibAssertionError as e:
                expect(e.error == "invalid_grant", f"{name}: {e.error} ({e.description})")
                continue
            raise AssertionError(f"{name}: no error")

    if a.jwt_key:
        check("authlib: jwt-bearer grant (RFC 7523), AssertionSession", authlib_jwt_bearer)
        check("authlib: jwt-bearer refusals are invalid_grant", authlib_jwt_bearer_errors)

    # ---- requests-oauthlib (oauthlib) -------------------------------------------------
    def oauthlib_password():
        s = OauthlibSession(client=LegacyApplicationClient(client_id=a.client_id), scope=SCOPE.split())
        # requests-oauthlib leaves the session's scope out of a password grant; vedauth needs
        # one there (TPP grants always name theirs), so it is passed to the body explicitly.
        tok = s.fetch_token(
            token_url, username=a.user, password=password,
            client_id=a.client_id, client_secret=secret, verify=a.ca, scope=SCOPE,
        )
        expect(tok["access_token"].endswith("=="), tok)
        expect(sorted(tok["scope"]) == sorted(SCOPE.split()), tok)
        r = s.get(verify_url, verify=a.ca)
        expect(r.status_code == 200, r.text)
        state["oauthlib"] = tok

    check("requests-oauthlib: password grant", oauthlib_password)

    def oauthlib_refresh():
        s = OauthlibSession(client_id=a.client_id, token=state["oauthlib"])
        tok = s.refresh_token(
            token_url, refresh_token=state["oauthlib"]["refresh_token"],
            auth=HTTPBasicAuth(a.client_id, secret), verify=a.ca,
        )
        expect(tok["access_token"] != state["oauthlib"]["access_token"], tok)
        state["oauthlib"] = tok

    check("requests-oauthlib: refresh_token grant", oauthlib_refresh)

    def oauthlib_client_credentials():
        s = OauthlibSession(client=BackendApplicationClient(client_id=a.client_id))
        tok = s.fetch_token(token_url, client_id=a.client_id, client_secret=secret, verify=a.ca)
        expect(tok["token_type"] == "Bearer", tok)
        r = s.get(verify_url, verify=a.ca)
        expect(r.status_code == 200 and r.json()["identity"] == f"client:{a.client_id}", r.text)

    check("requests-oauthlib: client_credentials grant", oauthlib_client_credentials)

    def oauthlib_errors():
        cases = [
            ("bad secret", BackendApplicationClient(client_id=a.client_id), dict(client_secret="wrong"),
             oauth_errors.InvalidClientError),
            ("bad password", LegacyApplicationClient(client_id=a.client_id),
             dict(username=a.user, password="wrong-password", client_secret=secret, scope=SCOPE),
             oauth_errors.InvalidGrantError),
        ]
        for name, client, kw, want in cases:
            s = OauthlibSession(client=client, scope=SCOPE.split())
            try:
                s.fetch_token(token_url, client_id=a.client_id, verify=a.ca, **kw)
            except want:
                continue
            except Exception as e:  # noqa: BLE001
                raise AssertionError(f"{name}: {type(e).__name__}: {e}")
            raise AssertionError(f"{name}: no error")

    check("requests-oauthlib: errors as oauthlib's exception types", oauthlib_errors)

    return checks.summary()


if __name__ == "__main__":
    sys.exit(main())
