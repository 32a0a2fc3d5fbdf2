"""pyVenafi's device calls (Authorize.Device, Authorize.Token with the device_code grant) against
a running vedauth, driven line by line from the browser test: it starts a device authorization,
prints the codes as JSON, then answers each "poll" line with the token or the error it got."""

import argparse
import json
import sys
import types

from pyvenafi.tpp.api.api_base import InvalidResponseError
from pyvenafi.tpp.api.session import Session
from pyvenafi.tpp.api.websdk.endpoints.authorize import _Authorize

GRANT = "urn:ietf:params:oauth:grant-type:device_code"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", required=True, help="host:port")
    ap.add_argument("--ca", required=True)
    ap.add_argument("--client-id", required=True)
    ap.add_argument("--scope", required=True)
    a = ap.parse_args()
    # What pyVenafi's WebSDK object gives its endpoints, without its password login.
    api = types.SimpleNamespace(
        _base_url=f"https://{a.host}",
        _app_url=f"https://{a.host}/vedsdk",
        _session=Session(headers={"Content-Type": "application/json"}, verify_ssl=a.ca),
        _token=None,
    )
    authorize = _Authorize(api)
    started = authorize.Device.post(client_id=a.client_id, scope=a.scope)
    print(json.dumps({
        "user_code": started.user_code,
        "verification_uri": started.verification_uri,
        "verification_uri_complete": started.verification_url_complete,
        "interval": started.interval,
        "expires_in": started.expires_in,
    }), flush=True)
    for line in sys.stdin:
        if line.strip() != "poll":
            break
        try:
            got = authorize.Token.post(a.client_id, None, grant_type=GRANT, device_code=started.device_code)
            print(json.dumps({"access_token": got.access_token, "scope": got.scope}), flush=True)
        except InvalidResponseError as e:
            print(json.dumps({"error": e.response.json().get("error")}), flush=True)


if __name__ == "__main__":
    main()
