"""The two halves of scripts/hot-functions (standard library only).

  wait URL                     until URL/healthz answers 200 (at most 180 s: valgrind is slow)
  drive URL DATA_DIR SECRET    every request path of the two faces and the gateway, three times
  list OUT CALLGRIND_FILE...   the vedauth binary's functions that ran, by store then cost, into OUT
  check LIST BINARY            the release binary has the list's functions, packed together
"""

import collections
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


def call(base, method, path, body=None, headers=None, form=False):
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
        with urllib.request.urlopen(req, context=CTX, timeout=120) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


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


def drive(base, data_dir, secret):
    with open(f"{data_dir}/initial-admin-password") as f:
        password = f.read().strip()
    seen = collections.defaultdict(set)
    app = "vedauth-admin"
    for _ in range(3):
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
    elif cmd == "drive":
        drive(*args)
    elif cmd == "list":
        list_functions(args[0], args[1:])
    elif cmd == "check":
        check(*args)
    else:
        sys.exit(__doc__)
