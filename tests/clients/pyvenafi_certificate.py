#!/usr/bin/env python3
"""Certificate login against a running vedauth, driven by the real pyVenafi client.

Usage:
    python pyvenafi_certificate.py --host 127.0.0.1:PORT --ca CA.pem --cert CERT.pem \
        --key KEY.pem --client-id ID --scope SCOPE

pyVenafi's `Authenticate(..., certificate_path=, key_file_path=)` posts {client_id, scope} to
/vedauth/Authorize/Certificate through `requests` with `cert=(certificate_path, key_file_path)`
(pyvenafi/tpp/api/websdk/websdk.py `_authenticate`, pyvenafi/tpp/api/session.py), then this
script asks `GET /vedsdk/Identity/Self` with the token it got. The server's CA is trusted
through pyVenafi's `verify_ssl`, which it hands to `requests` as `verify`.

Prints one JSON object: {"identity": ..., "prefixed_universal": ..., "prefixed_name": ...}.
Exit 0 on success, 1 on any failure (the error on stderr).
"""

import argparse
import json
import sys


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--host", required=True)
    p.add_argument("--ca", required=True)
    p.add_argument("--cert", required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--client-id", required=True)
    p.add_argument("--scope", required=True)
    a = p.parse_args()
    from pyvenafi.tpp import Authenticate

    try:
        api = Authenticate(
            host=a.host,
            application_id=a.client_id,
            scope=a.scope,
            certificate_path=a.cert,
            key_file_path=a.key,
            verify_ssl=a.ca,
            connection_timeout=10,
            read_timeout=20,
        )
        me = api.websdk.Identity.Self.get()
        ids = me.identities
        if not ids:
            print("Identity/Self returned no identity", file=sys.stderr)
            return 1
        print(json.dumps({
            "token_prefix_ok": api.websdk._token.startswith("Bearer "),
            "prefixed_universal": ids[0].prefixed_universal,
            "prefixed_name": ids[0].prefixed_name,
        }))
        return 0
    except Exception as e:  # pyVenafi raises its own and requests' errors
        print(f"{type(e).__name__}: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
