"""The two halves of scripts/hot-functions (the standard library; `cryptography` for pki and
the JWT grants).

  wait URL                     until URL/healthz answers 200 (at most 180 s: valgrind is slow)
  pki DIR                      an issuer's name, ES256 key and JWK Set; a CA, its client certificate
                               for `admin` and its server certificate for 127.0.0.1 (needs
                               the `cryptography` package)
  jwks DIR PORT                serves DIR's JWK Set over HTTPS with DIR's server certificate
  drive URL DATA_DIR SECRET DIR  every request path of the two faces and the gateway, three
                               times; the JWT grants sign with DIR's key, and over TLS the
                               certificate grant presents DIR's client certificate
  list OUT CALLGRIND_FILE...   the vedauth binary's functions that ran, by store then cost, into OUT
  check LIST BINARY            the release binary has the list's functions, packed together
"""

import base64
import collections
import datetime
import http.server
import ipaddress
import json
import re
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

CTX = ssl.create_default_context()
CTX.check_hostname = False
CTX.verify_mode = ssl.CERT_NONE  # the server's own generated certificate, on loopback


def call(base, method, path, body=None, headers=None, form=False, ctx=CTX):
    h = dict(headers or {})
    data = None
    if body is not None:
        if form:
            data = urllib.parse.urlencode(body).encode()
            h["Content-Type"] = "application/x-www-form-urlencoded"
        else:
            data = json.dumps(body).encode()
            h["Content-Type"] = "application/json"
    req = urllib.request.Request(base + path, data=data, headers=h, method=method)
    try:
        with urllib.request.urlopen(req, context=ctx, timeout=120) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


ISSUER = "https://issuer.hot-functions.invalid"


def b64(raw):
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def pki(out):
    """The JWT issuer's P-256 key and JWK Set; a CA, a certificate naming `admin` by CN for the
    certificate grant, and one for the key server at 127.0.0.1. Written as PEM files into OUT."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    def pem_key(key):
        return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                 serialization.NoEncryption())

    issuer = ec.generate_private_key(ec.SECP256R1())
    nums = issuer.public_key().public_numbers()
    jwk = {"kty": "EC", "crv": "P-256", "kid": "hot", "use": "sig",
           "x": b64(nums.x.to_bytes(32, "big")), "y": b64(nums.y.to_bytes(32, "big"))}
    with open(f"{out}/issuer.key", "wb") as f:
        f.write(pem_key(issuer))
    with open(f"{out}/issuer", "w") as f:  # for `vedauth jwt add --issuer`
        f.write(ISSUER)
    with open(f"{out}/jwks.json", "w") as f:
        json.dump({"keys": [jwk]}, f)
    now = datetime.datetime.now(datetime.timezone.utc)

    def cert(cn, key, signer, signer_name, ca, usage):
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
        b = (x509.CertificateBuilder().subject_name(name).issuer_name(signer_name or name)
             .public_key(key.public_key()).serial_number(x509.random_serial_number())
             .not_valid_before(now - datetime.timedelta(hours=1))
             .not_valid_after(now + datetime.timedelta(days=1)))
        if ca:
            b = b.add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            b = b.add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False,
                                              False), critical=True)
        else:
            b = b.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            if usage == ExtendedKeyUsageOID.SERVER_AUTH:
                b = b.add_extension(x509.SubjectAlternativeName(
                    [x509.IPAddress(ipaddress.ip_address(cn))]), critical=False)
        return b.sign(signer, hashes.SHA256())

    def issued(cn, ca_name, usage):
        key = ec.generate_private_key(ec.SECP256R1())
        leaf = cert(cn, key, ca_key, ca_name, False, usage)
        return leaf.public_bytes(serialization.Encoding.PEM), pem_key(key)

    # One CA for both: the client certificate's issuer, and the key server's, which the server
    # trusts for key fetches (tokens.jwt_ca_file).
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = cert("hot-functions CA", ca_key, ca_key, None, True, None)
    client, client_key = issued("admin", ca.subject, ExtendedKeyUsageOID.CLIENT_AUTH)
    keys, keys_key = issued("127.0.0.1", ca.subject, ExtendedKeyUsageOID.SERVER_AUTH)
    for name, data in [("ca.pem", ca.public_bytes(serialization.Encoding.PEM)),
                       ("client.pem", client), ("client.key", client_key),
                       ("keys.pem", keys), ("keys.key", keys_key)]:
        with open(f"{out}/{name}", "wb") as f:
            f.write(data)


def jwks(pki_dir, port):
    """The issuer's key server: the JWK Set at any path, over HTTPS with a certificate of
    PKI_DIR's CA, which the server trusts for key fetches (tokens.jwt_ca_file)."""
    with open(f"{pki_dir}/jwks.json", "rb") as f:
        body = f.read()

    class Keys(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(f"{pki_dir}/keys.pem", f"{pki_dir}/keys.key")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", int(port)), Keys)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    server.serve_forever()


def issuer_key(pki_dir):
    from cryptography.hazmat.primitives import serialization

    with open(f"{pki_dir}/issuer.key", "rb") as f:
        return serialization.load_pem_private_key(f.read(), None)


def signed_jwt(key, jti):
    """An ES256 JWT from the hot-functions issuer (its `issuer_key`) for `admin`, valid ten
    minutes."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

    now = int(time.time())
    head = b64(json.dumps({"alg": "ES256", "kid": "hot", "typ": "JWT"}).encode())
    claims = b64(json.dumps({"iss": ISSUER, "aud": "vedauth", "sub": "admin", "iat": now,
                             "exp": now + 600, "jti": jti}).encode())
    r, s = decode_dss_signature(key.sign(f"{head}.{claims}".encode(), ec.ECDSA(hashes.SHA256())))
    return f"{head}.{claims}.{b64(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"


def wait(base):
    deadline = time.time() + 180
    while time.time() < deadline:
        try:
            if call(base, "GET", "/healthz")[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.5)
    sys.exit(f"hot-functions: {base} did not answer within 180 s")


def drive(base, data_dir, secret, pki_dir):
    with open(f"{data_dir}/initial-admin-password") as f:
        password = f.read().strip()
    seen = collections.defaultdict(set)
    app = "vedauth-admin"
    with_cert = ssl.create_default_context()
    with_cert.check_hostname = False
    with_cert.verify_mode = ssl.CERT_NONE
    with_cert.load_cert_chain(f"{pki_dir}/client.pem", f"{pki_dir}/client.key")
    key = issuer_key(pki_dir)
    for n in range(3):
        # VEDauth face: password grant, verify, the gateway check, introspection, refresh, revoke.
        s, b = call(base, "POST", "/vedauth/authorize/oauth", {
            "client_id": app, "username": "admin", "password": password,
            "scope": "admin;certificate:manage"})
        seen["password grant"].add(s)
        tokens = json.loads(b)
        bearer = {"Authorization": "Bearer " + tokens["access_token"]}
        intro = {"client_id": app, "client_secret": secret, "token": tokens["access_token"]}
        for _ in range(3):  # the second use of a token keeps its renderings
            seen["verify"].add(call(base, "GET", "/vedauth/authorize/verify", headers=bearer)[0])
            seen["gateway"].add(call(base, "GET", "/gateway/check/vedsdk/Certificates/Retrieve",
                                     headers=bearer)[0])
            seen["gateway, forwarded"].add(call(base, "GET", "/gateway/check", headers=dict(
                bearer, **{"X-Forwarded-Uri": "/vedsdk/Identity/Self",
                           "X-Forwarded-Method": "GET"}))[0])
            seen["introspection"].add(call(base, "POST", "/oauth2/introspect", intro)[0])
            seen["introspection, form"].add(
                call(base, "POST", "/oauth2/introspect", intro, form=True)[0])
        seen["metrics"].add(call(base, "GET", "/metrics", headers=bearer)[0])
        seen["verify, bad token"].add(call(base, "GET", "/vedauth/authorize/verify",
                                           headers={"Authorization": "Bearer nope"})[0])
        s, b = call(base, "POST", "/vedauth/authorize/token",
                    {"client_id": app, "refresh_token": tokens["refresh_token"]})
        seen["refresh"].add(s)
        fresh = json.loads(b).get("access_token", "")
        seen["revoke"].add(call(base, "GET", "/vedauth/revoke/token",
                                headers={"Authorization": "Bearer " + fresh})[0])
        # OAuth 2.0 face: each grant type, revocation, a refused client, the metadata.
        s, b = call(base, "POST", "/oauth2/token", {
            "grant_type": "password", "client_id": app, "client_secret": secret,
            "username": "admin", "password": password, "scope": "admin"}, form=True)
        seen["oauth2 password"].add(s)
        s, b = call(base, "POST", "/oauth2/token", {
            "grant_type": "refresh_token", "client_id": app, "client_secret": secret,
            "refresh_token": json.loads(b).get("refresh_token", "")}, form=True)
        seen["oauth2 refresh"].add(s)
        seen["oauth2 revoke"].add(call(base, "POST", "/oauth2/revoke", {
            "client_id": app, "client_secret": secret,
            "token": json.loads(b).get("access_token", "")}, form=True)[0])
        seen["oauth2 client credentials"].add(call(base, "POST", "/oauth2/token", {
            "grant_type": "client_credentials", "client_id": app, "client_secret": secret},
            form=True)[0])
        seen["oauth2 wrong secret"].add(call(base, "POST", "/oauth2/token", {
            "grant_type": "client_credentials", "client_id": app, "client_secret": "wrong"},
            form=True)[0])
        # The JWT grant on both faces, and (over TLS) the certificate grant.
        seen["jwt grant"].add(call(base, "POST", "/vedauth/authorize/jwt", {
            "client_id": app, "jwt": signed_jwt(key, f"vedauth-{n}"),
            "scope": "certificate:manage"})[0])
        seen["oauth2 jwt bearer"].add(call(base, "POST", "/oauth2/token", {
            "grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer", "client_id": app,
            "client_secret": secret, "assertion": signed_jwt(key, f"oauth2-{n}"),
            "scope": "certificate:manage"}, form=True)[0])
        if base.startswith("https:"):
            seen["certificate grant"].add(call(base, "POST", "/vedauth/authorize/certificate", {
                "client_id": app, "scope": "certificate:manage"}, ctx=with_cert)[0])
        seen["metadata"].add(call(base, "GET", "/.well-known/oauth-authorization-server")[0])
        seen["health"].add(call(base, "GET", "/healthz")[0])
    expected = {"verify, bad token": {401}, "oauth2 wrong secret": {401},
                "gateway, forwarded": {403}}
    wrong = {k: v for k, v in seen.items() if v != expected.get(k, {200})}
    if wrong:
        sys.exit(f"hot-functions: unexpected answers {wrong}")
    print(f"hot-functions: {base}: {len(seen)} request kinds answered as expected")


def list_functions(out, files):
    """Self cost per function of the `vedauth` object, summed over the callgrind files.
    Callgrind names each object and function once, as `ob=(n) name`, then `ob=(n)`; a cost line
    right after `calls=` is the call's inclusive cost, not the caller's own.

    The files are named `cg.STORE-TRANSPORT`. Functions that ran with every store come first,
    then those of one store only, store by store in the order of the files: a server touches
    one store's code, which so stays in one run instead of interleaved with the other's."""
    named = re.compile(r"^(c?ob|c?fn)=\((\d+)\)(?: (.*))?$")
    cost = collections.Counter()
    stores = collections.defaultdict(set)
    order = []
    for path in files:
        store = path.rsplit("/", 1)[-1].removeprefix("cg.").split("-")[0]
        if store not in order:
            order.append(store)
        obs, fns, ob, fn, after_call = {}, {}, None, None, False
        with open(path, errors="replace") as f:
            for line in f:
                line = line.rstrip("\n")
                m = named.match(line)
                if m:
                    kind, n, name = m.groups()
                    table = obs if kind.endswith("ob") else fns
                    if name:
                        table[n] = name
                    if kind == "ob":
                        ob = obs.get(n)
                    elif kind == "fn":
                        fn = fns.get(n)
                    continue
                if line.startswith("calls="):
                    after_call = True
                    continue
                if line[:1].isdigit() or line[:1] in "+-*":
                    if after_call:
                        after_call = False
                    elif fn and ob and ob.rsplit("/", 1)[-1] == "vedauth":
                        parts = line.split()
                        if len(parts) >= 2 and parts[1].isdigit():
                            # `'2`: callgrind's mark for a recursion level, not in the symbol.
                            name = re.sub(r"'\d+$", "", fn)
                            cost[name] += int(parts[1])
                            stores[name].add(store)

    def tier(name):
        ran = stores[name]
        return 0 if len(ran) == len(order) else 1 + min(order.index(s) for s in ran)

    names = sorted((n for n in cost if not n.startswith(("0x", "("))),
                   key=lambda n: (tier(n), -cost[n]))
    if len(names) < 1000:
        sys.exit(f"hot-functions: only {len(names)} functions found: not a whole run")
    with open(out, "w") as f:
        f.write("# The functions the server executed in scripts/hot-functions' runs: those of every\n")
        f.write("# store, then each store's own, hottest first. The order build.rs gives the release\n")
        f.write("# binary's code. Made by scripts/hot-functions.\n")
        f.write("\n".join(names) + "\n")
    tiers = collections.Counter(tier(n) for n in names)
    print(f"hot-functions: {len(names)} functions into {out}: {tiers[0]} of every store, "
          + ", ".join(f"{tiers[i + 1]} of {s} alone" for i, s in enumerate(order)))


def check(list_file, binary):
    """Fails unless 90 % of the listed functions are in the binary (else the list is stale) and
    they fill 90 % of the text symbols in the address range they span (else the layout was not
    applied: laid out by the compiler, they are a quarter of them)."""
    with open(list_file) as f:
        listed = {l.strip() for l in f if l.strip() and not l.startswith("#")}
    nm = subprocess.run(["nm", "-n", binary], capture_output=True, text=True, check=True).stdout
    text = [(int(p[0], 16), p[2]) for p in (l.split() for l in nm.splitlines())
            if len(p) == 3 and p[1] in "tTwW"]
    at = [a for a, n in text if n in listed]
    if len(at) < 0.9 * len(listed):
        sys.exit(f"hot-functions: only {len(at)} of the {len(listed)} listed functions are in "
                 f"{binary}: the list is stale; make it again with scripts/hot-functions")
    span = [n for a, n in text if min(at) <= a <= max(at)]
    share = len(at) / len(span)
    if share < 0.9:
        sys.exit(f"hot-functions: the listed functions are {share:.0%} of the text symbols where "
                 f"they lie in {binary}: not laid out by the list (build.rs)")
    print(f"hot-functions: {len(at)} of {len(listed)} listed functions in {binary}, "
          f"{share:.1%} of the text symbols where they lie")


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "wait":
        wait(args[0])
    elif cmd == "pki":
        pki(*args)
    elif cmd == "jwks":
        jwks(*args)
    elif cmd == "drive":
        drive(*args)
    elif cmd == "list":
        list_functions(args[0], args[1:])
    elif cmd == "check":
        check(*args)
    else:
        sys.exit(__doc__)
