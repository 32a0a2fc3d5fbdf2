#!/usr/bin/env python3
"""Token lifecycle against a running vedauth, driven by the real vcert-python client.

Usage:
    python vcert_lifecycle.py --url https://127.0.0.1:PORT --ca CA.pem \
        --user NAME --password-file FILE [--verbose]

Run it with the interpreter printed by scripts/client-venv (which pins vcert). The server must have
the application `vcert-sdk` with scope `certificate:manage,revoke` and a rule admitting NAME.

Every HTTP call goes through vcert's own TPPTokenConnection (vcert/connection_tpp_token.py), with
vcert's defaults (client_id `vcert-sdk`, scope `certificate:manage,revoke`); the CA bundle is
trusted through vcert's `http_request_kwargs={"verify": CA}`. A `requests` response hook (also
passed through http_request_kwargs) records each response so that statuses and bodies can be
checked and shown when something deviates.

Prints one line per step and a closing `vcert_lifecycle: N passed, N failed` line.
Exit 0 only if every check passed; 1 on any deviation; 2 on bad usage.
"""

import argparse
import base64
import ipaddress
import json
import logging
import os
import re
import sys
import time
import traceback
from urllib.parse import urlsplit

CLIENT_ID = "vcert-sdk"
SCOPE = "certificate:manage,revoke"
VERIFY_URL = "vedauth/authorize/verify"  # vcert-python has no verify helper; same spelling as vcert (Go)
ISO_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
TOKEN_RE = re.compile(r"^[A-Za-z0-9+/]{22}==$")


class CheckFailed(Exception):
    pass


class Recorder:
    """`requests` response hook: remembers every response vcert received."""

    def __init__(self):
        self.responses = []

    def __call__(self, response, *args, **kwargs):
        self.responses.append(response)
        return response

    @property
    def last(self):
        return self.responses[-1] if self.responses else None

    def mark(self):
        return len(self.responses)

    def since(self, mark):
        return self.responses[mark:]


def describe(resp):
    """Request and response, secrets in the request redacted, for failure messages."""
    if resp is None:
        return "    (no HTTP response was received)"
    req = resp.request
    hdrs = {k: ("Bearer <redacted>" if k.lower() == "authorization" else v) for k, v in req.headers.items()}
    body = req.body
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    if body:
        try:
            data = json.loads(body)
            if isinstance(data, dict):
                for k in ("password", "refresh_token"):
                    if k in data:
                        data[k] = "<redacted>"
            body = json.dumps(data)
        except ValueError:
            pass
    rbody = resp.content.decode("utf-8", "replace")
    if len(rbody) > 2000:
        rbody = rbody[:2000] + "...(truncated)"
    return (
        f"    request:  {req.method} {req.url}\n"
        f"              headers {hdrs}\n"
        f"              body {body}\n"
        f"    response: {resp.status_code} {resp.reason}\n"
        f"              headers {dict(resp.headers)}\n"
        f"              body {rbody}"
    )


def check(cond, msg, resp=None):
    if not cond:
        raise CheckFailed(msg + ("\n" + describe(resp) if resp is not None else ""))


def is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def check_token_shape(name, value, resp):
    check(isinstance(value, str), f"{name} is {type(value).__name__} {value!r}, expected a string", resp)
    check(len(value) == 24 and value.endswith("=="), f"{name} {value!r} is not 24 characters ending in '=='", resp)
    check(TOKEN_RE.match(value) is not None and len(base64.b64decode(value)) == 16,
          f"{name} {value!r} is not standard base64 of 16 bytes", resp)


def response_json(resp):
    try:
        return resp.json()
    except ValueError:
        raise CheckFailed("response body is not JSON\n" + describe(resp))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--url", required=True, help="https://HOST:PORT of the vedauth server (loopback)")
    ap.add_argument("--ca", required=True, help="PEM CA bundle that signed the server certificate")
    ap.add_argument("--user", required=True)
    ap.add_argument("--password-file", required=True, help="file holding the password (one trailing newline is ignored)")
    ap.add_argument("--timeout", type=float, default=30.0, help="per-request timeout in seconds (default 30)")
    ap.add_argument("--allow-non-loopback", action="store_true", help="allow a URL whose host is not a loopback address")
    ap.add_argument("--verbose", action="store_true", help="show vcert's own log messages on stderr")
    args = ap.parse_args()

    # ---- arguments ---------------------------------------------------------------------------
    parts = urlsplit(args.url)
    if parts.scheme != "https" or not parts.hostname:
        ap.error(f"--url must be https://HOST:PORT (vcert only speaks HTTPS), got {args.url!r}")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        ap.error("--url must have no path: vcert expects /vedauth at the origin root")
    host = parts.hostname
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback and not args.allow_non_loopback:
        ap.error(f"refusing non-loopback host {host!r} (pass --allow-non-loopback to override)")
    if not os.path.isfile(args.ca):
        ap.error(f"--ca {args.ca!r} is not a file")
    try:
        with open(args.password_file, "rb") as f:
            password = f.read().decode("utf-8")
    except OSError as e:
        ap.error(f"cannot read --password-file: {e}")
    if password.endswith("\n"):
        password = password[:-1]
        if password.endswith("\r"):
            password = password[:-1]
    if not password:
        ap.error("--password-file is empty")

    # Talk to the given URL directly, never through a proxy from the environment.
    for var in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        os.environ.pop(var, None)

    try:
        from importlib.metadata import version
        import requests
        import vcert
        from vcert import Authentication, TPPTokenConnection
        from vcert.common import TokenInfo
        from vcert.errors import ServerUnexptedBehavior, VenafiConnectionError, VenafiError
    except ImportError as e:
        print(f"FAIL setup: cannot import vcert ({e}); run with the python from scripts/client-venv")
        return 1

    # vcert logs expected errors (401/400 bodies) through the root logger; keep them quiet unless asked.
    logging.getLogger().setLevel(logging.DEBUG if args.verbose else logging.CRITICAL)
    logging.getLogger("vcert").setLevel(logging.DEBUG if args.verbose else logging.CRITICAL)

    print(f"vcert {version('vcert')} (requests {requests.__version__}) against {args.url}, user {args.user!r}")

    rec = Recorder()

    def new_conn(**kw):
        # A fresh dict each time: vcert keeps (and may mutate) the one it is given.
        http_kwargs = {"verify": args.ca, "timeout": args.timeout, "hooks": {"response": [rec]}}
        return TPPTokenConnection(url=args.url, http_request_kwargs=http_kwargs, **kw)

    def vcert_get_verify(c):
        """Authenticated GET of vedauth/authorize/verify through vcert's own _get (Bearer header added by vcert)."""
        return c._get(url=VERIFY_URL, params=None, check_token=False, include_token_header=True)

    def expect_vcert_error(label, fn, want_status, want_error, exc_types=(VenafiConnectionError,)):
        """Run fn; it must raise one of vcert's exception classes after a response with want_status."""
        mark = rec.mark()
        try:
            result = fn()
        except exc_types as e:
            resp = rec.last if rec.since(mark) else None
            check(resp is not None, f"{label}: vcert raised {type(e).__name__} without any HTTP response: {e}")
            check(resp.status_code == want_status,
                  f"{label}: expected HTTP {want_status}, got {resp.status_code} (vcert raised {type(e).__name__})", resp)
            body = response_json(resp)
            check(isinstance(body, dict) and body.get("error") == want_error,
                  f"{label}: expected JSON error {want_error!r}, got {body!r}", resp)
            return e, resp, body
        except (VenafiError, requests.exceptions.RequestException, OSError) as e:
            resp = rec.last if rec.since(mark) else None
            raise CheckFailed(f"{label}: expected vcert to raise {'/'.join(t.__name__ for t in exc_types)}, "
                              f"but it raised {type(e).__module__}.{type(e).__name__}: {e}"
                              + ("\n" + describe(resp) if resp is not None else ""))
        resp = rec.last if rec.since(mark) else None
        raise CheckFailed(f"{label}: expected vcert to raise, but it returned {result!r}"
                          + ("\n" + describe(resp) if resp is not None else ""))

    state = {}
    now = lambda: int(time.time())  # noqa: E731

    # ---- steps -------------------------------------------------------------------------------
    def step_get_token():
        conn = new_conn(user=args.user, password=password)
        check(conn._auth.client_id == CLIENT_ID and conn._auth.scope == SCOPE,
              f"vcert defaults changed: client_id={conn._auth.client_id!r} scope={conn._auth.scope!r}")
        mark = rec.mark()
        tok = conn.get_access_token()
        resp = rec.last
        check(len(rec.since(mark)) == 1 and resp.request.method == "POST"
              and resp.request.url.endswith("/vedauth/authorize/oauth"),
              "vcert did not make exactly one POST vedauth/authorize/oauth", resp)
        check(resp.status_code == 200, f"expected 200, got {resp.status_code}", resp)
        check(isinstance(tok, TokenInfo), f"get_access_token returned {tok!r}", resp)
        check_token_shape("access_token", tok.access_token, resp)
        check(isinstance(tok.refresh_token, str) and tok.refresh_token, "refresh_token missing or empty", resp)
        check_token_shape("refresh_token", tok.refresh_token, resp)
        check(is_int(tok.expires) and tok.expires > now(),
              f"expires {tok.expires!r} is not an integer in the future (now {now()})", resp)
        body = response_json(resp)
        check(body.get("token_type") == "Bearer", f"token_type {body.get('token_type')!r}, expected 'Bearer'", resp)
        check(body.get("scope") == SCOPE, f"scope {body.get('scope')!r}, expected {SCOPE!r}", resp)
        check(isinstance(body.get("identity"), str) and body["identity"], "identity missing", resp)
        check(conn._auth.access_token == tok.access_token and conn._auth.refresh_token == tok.refresh_token,
              "vcert did not store the new tokens in its Authentication")
        state.update(conn=conn, tok1=tok, identity=body["identity"])
        return f"access_token {len(tok.access_token)} chars, expires in {tok.expires - now()}s, identity {body['identity']}"

    def step_verify_first():
        status, data = vcert_get_verify(state["conn"])
        resp = rec.last
        check(status == 200 and isinstance(data, dict), f"verify returned {status} {data!r}", resp)
        check(data.get("application") == CLIENT_ID, f"application {data.get('application')!r}", resp)
        return "first access token verifies (200)"

    def step_refresh():
        conn, tok1 = state["conn"], state["tok1"]
        mark = rec.mark()
        tok2 = conn.refresh_access_token()
        resp = rec.last
        check(len(rec.since(mark)) == 1 and resp.request.method == "POST"
              and resp.request.url.endswith("/vedauth/authorize/token"),
              "vcert did not make exactly one POST vedauth/authorize/token", resp)
        check(resp.status_code == 200, f"expected 200, got {resp.status_code}", resp)
        check_token_shape("new access_token", tok2.access_token, resp)
        check_token_shape("new refresh_token", tok2.refresh_token, resp)
        check(tok2.access_token != tok1.access_token, "refresh returned the same access_token", resp)
        check(tok2.refresh_token != tok1.refresh_token, "refresh returned the same refresh_token", resp)
        check(is_int(tok2.expires) and tok2.expires > now(), f"expires {tok2.expires!r} not an int in the future", resp)
        check(conn._auth.access_token == tok2.access_token and conn._auth.refresh_token == tok2.refresh_token,
              "vcert did not store the refreshed tokens")
        state["tok2"] = tok2
        return "new access and refresh tokens, both differ from the old ones"

    def step_verify_new():
        status, data = vcert_get_verify(state["conn"])
        resp = rec.last
        check(resp.request.headers.get("Authorization") == f"Bearer {state['tok2'].access_token}",
              "vcert did not send the NEW access token as Bearer")
        check(status == 200, f"expected 200, got {status}", resp)
        check(isinstance(data, dict), f"verify body is {type(data).__name__}, expected a JSON object", resp)
        check(data.get("application") == CLIENT_ID, f"application {data.get('application')!r}, expected {CLIENT_ID!r}", resp)
        check(data.get("scope") == SCOPE, f"scope {data.get('scope')!r}, expected {SCOPE!r}", resp)
        vf = data.get("valid_for")
        check(is_int(vf) and vf > 0, f"valid_for {vf!r} is not an integer > 0", resp)
        iso = data.get("access_issued_on_ISO8601")
        check(isinstance(iso, str) and ISO_RE.match(iso) is not None,
              f"access_issued_on_ISO8601 {iso!r} does not match {ISO_RE.pattern}", resp)
        check(data.get("identity") == state["identity"],
              f"identity {data.get('identity')!r}, token response said {state['identity']!r}", resp)
        issued = data.get("access_issued_on_unix_time")
        check(is_int(issued) and abs(issued - now()) <= 300,
              f"access_issued_on_unix_time {issued!r} is not close to now ({now()})", resp)
        # vcert (Go) checkcred computes the access expiry as access_issued_on_ISO8601 + valid_for.
        check(abs(issued + vf - state["tok2"].expires) <= 2,
              f"access_issued_on_unix_time + valid_for = {issued + vf}, but refresh said expires {state['tok2'].expires}",
              resp)
        return f"application {data['application']}, scope {data['scope']}, valid_for {vf}, issued {iso}"

    def step_old_access_rejected():
        old = new_conn(access_token=state["tok1"].access_token)
        expect_vcert_error("verify with the old access token", lambda: vcert_get_verify(old), 401, "invalid_token")
        return "old access token: verify -> 401 invalid_token (vcert raised VenafiConnectionError)"

    def step_old_refresh_rejected():
        old = new_conn(refresh_token=state["tok1"].refresh_token)
        _, resp, _ = expect_vcert_error("refresh with the old refresh token", old.refresh_access_token, 400,
                                        "invalid_grant", (VenafiConnectionError, ServerUnexptedBehavior))
        return f"old refresh token: refresh -> {resp.status_code} invalid_grant (vcert raised)"

    def step_revoke():
        conn = state["conn"]
        mark = rec.mark()
        status, data = conn.revoke_access_token()
        resp = rec.last
        check(len(rec.since(mark)) == 1 and resp.request.method == "GET"
              and resp.request.url.endswith("/vedauth/revoke/token"),
              "vcert did not make exactly one GET vedauth/revoke/token", resp)
        check(resp.request.headers.get("Authorization") == f"Bearer {state['tok2'].access_token}",
              "vcert did not revoke with the new access token")
        check(status == 200, f"expected 200, got {status}", resp)
        return f"revoke_access_token -> {status} {json.dumps(data)}"

    def step_revoked_access_rejected():
        expect_vcert_error("verify with the revoked access token", lambda: vcert_get_verify(state["conn"]), 401,
                           "invalid_token")
        return "revoked access token: verify -> 401 invalid_token"

    def step_revoked_refresh_rejected():
        c = new_conn(refresh_token=state["tok2"].refresh_token)
        _, resp, _ = expect_vcert_error("refresh with the revoked grant's refresh token", c.refresh_access_token, 400,
                                        "invalid_grant", (VenafiConnectionError, ServerUnexptedBehavior))
        return f"revoked grant's refresh token: refresh -> {resp.status_code} invalid_grant"

    def step_wrong_password():
        bad = new_conn(user=args.user, password=password + "-not-it")
        e, resp, _ = expect_vcert_error("get_access_token with a wrong password", bad.get_access_token, 401,
                                        "invalid_grant")
        check(bad._auth.access_token is None, "vcert stored an access token after a failed login")
        return f"wrong password: vcert raised {type(e).__module__}.{type(e).__name__} (HTTP {resp.status_code} invalid_grant)"

    steps = [
        ("get token (user+password)", step_get_token),
        ("verify first token", step_verify_first),
        ("refresh token", step_refresh),
        ("verify new token", step_verify_new),
        ("old access token rejected", step_old_access_rejected),
        ("old refresh token rejected", step_old_refresh_rejected),
        ("revoke token", step_revoke),
        ("revoked token rejected", step_revoked_access_rejected),
        ("revoked refresh rejected", step_revoked_refresh_rejected),
        ("wrong password rejected", step_wrong_password),
    ]

    passed = 0
    failed = 0
    for name, fn in steps:
        try:
            detail = fn()
        except CheckFailed as e:
            print(f"FAIL {name}: {e}")
            failed += 1
        except Exception as e:  # anything vcert/requests raised where success was expected
            resp = rec.last
            print(f"FAIL {name}: unexpected {type(e).__module__}.{type(e).__name__}: {e}")
            if resp is not None:
                print("  last HTTP exchange:\n" + describe(resp))
            if args.verbose:
                traceback.print_exc()
            failed += 1
        else:
            print(f"ok   {name}: {detail}")
            passed += 1
            continue
        break  # later steps depend on earlier ones

    skipped = len(steps) - passed - failed
    summary = f"vcert_lifecycle: {passed} passed, {failed} failed"
    if skipped:
        summary += f", {skipped} skipped"
    print(summary)
    return 0 if failed == 0 and skipped == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
