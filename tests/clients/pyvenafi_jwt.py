#!/usr/bin/env python3
"""JWT login against a running vedauth, driven by the real pyVenafi client (PyPI `pyvenafi`).

Usage:
    python pyvenafi_jwt.py --host 127.0.0.1:PORT --ca CA.pem --client-id ID --scope SCOPE \
        --jwt-file FILE --expect-identity IDENTITY

pyVenafi 1.1.0 has the endpoint (`Authorize.Jwt.post(client_id, jwt, scope)`, which posts to
`/vedauth/Authorize/Jwt`) but its `WebSDK` session logs in only with a password or a client
certificate. So the session here is pyVenafi's own `WebSDK` with its `_authenticate` step done
the way its other logins do it, through `Authorize.Jwt`: the token pyVenafi gets is put in the
session's headers by pyVenafi's code, and every later call (`SystemStatus.Version` while the
session starts, then `Identity.Self`) is pyVenafi's.

Then the same JWT is presented again through `Authorize.Jwt`: it must be refused (401
`invalid_grant`), since a JWT is used once.

Prints one line per check and `pyvenafi_jwt: N passed, N failed`; exit 0 only if all passed.
"""

import argparse
import sys

from pyvenafi.tpp.api.api_base import InvalidResponseError
from pyvenafi.tpp.api.websdk.websdk import WebSDK

from checks import Checks

tally = Checks("pyvenafi_jwt")
check = tally.check


class JwtWebSDK(WebSDK):
    """pyVenafi's WebSDK session, logged in with a JWT."""

    def __init__(self, host, jwt, client_id, scope, ca):
        self._jwt = jwt
        self.jwt_login = None
        super().__init__(
            host=host,
            username=None,
            password=None,
            application_id=client_id,
            scope=scope,
            verify_ssl=ca,
        )

    def _authenticate(self):
        if not self._token:
            self.jwt_login = self.Authorize.Jwt.post(
                client_id=self._application_id, jwt=self._jwt, scope=str(self._scope)
            )
            self._token = f"Bearer {self.jwt_login.access_token}"
            self._refresh_token = self.jwt_login.refresh_token
        # The rest as pyVenafi's own _authenticate: with the token in the headers.
        self._session.update_headers({"Authorization": self._token})


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--host", required=True)
    p.add_argument("--ca", required=True)
    p.add_argument("--client-id", required=True)
    p.add_argument("--scope", required=True)
    p.add_argument("--jwt-file", required=True)
    p.add_argument("--expect-identity", required=True)
    a = p.parse_args()
    jwt = open(a.jwt_file).read().strip()

    api = JwtWebSDK(a.host, jwt, a.client_id, a.scope, a.ca)
    login = api.jwt_login
    check("Authorize.Jwt answers 200", login.api_response.status_code == 200,
          login.api_response.text)
    check("identity of the grant", login.identity == a.expect_identity, login.identity)
    check("scope of the grant", login.scope == a.scope, login.scope)
    check("a refresh token", bool(login.refresh_token), login.refresh_token)
    check("TPP version read with the token", api.tpp_version is not None, api.tpp_version)

    me = api.Identity.Self.get()
    check("Identity.Self answers 200", me.api_response.status_code == 200, me.api_response.text)
    ids = [i.prefixed_universal for i in me.identities]
    check("Identity.Self names the JWT's identity", ids == [a.expect_identity], ids)

    try:
        again = api.Authorize.Jwt.post(client_id=a.client_id, jwt=jwt, scope=a.scope)
        check("the same JWT again is refused", False, again.api_response.text)
    except InvalidResponseError as e:
        r = e.response
        body = r.json() if r.content else {}
        check("the same JWT again is refused with 401 invalid_grant",
              r.status_code == 401 and body.get("error") == "invalid_grant", r.text)

    return tally.summary()


if __name__ == "__main__":
    sys.exit(main())
