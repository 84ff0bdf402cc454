"""Verify a portcullis identity assertion with PyJWT, an independent JWT implementation.

usage: verify_assertion.py JWKS_FILE TOKEN AUDIENCE ISSUER
Prints the verified claims as JSON; exits non-zero (with PyJWT's error) if verification fails.
"""
import json
import sys

import jwt

jwks_file, token, audience, issuer = sys.argv[1:5]
with open(jwks_file) as f:
    jwks = jwt.PyJWKSet.from_dict(json.load(f))
kid = jwt.get_unverified_header(token)["kid"]
key = next((k for k in jwks.keys if k.key_id == kid), None)
if key is None:
    sys.exit(f"no key with kid {kid} in the JWKS")
claims = jwt.decode(token, key.key, algorithms=["ES256"], audience=audience, issuer=issuer)
print(json.dumps(claims))
