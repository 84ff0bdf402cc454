#!/usr/bin/env python3
"""Sign in through portcullis and a real OpenID Provider (node oidc-provider, the one in
tests/oidc-provider), the way a browser does: start -> the provider's login and consent
pages -> callback -> first proxied request.

  oidc_login.py cookie  GATEWAY PROVIDER CA_FILE      print the session cookie (name=value)
  oidc_login.py latency GATEWAY PROVIDER CA_FILE N    N sign-ins; medians per phase

GATEWAY is the gateway's base URL (http://127.0.0.1:PORT), PROVIDER the [[oidc]] name.
Traffic goes to 127.0.0.1 only. Phases timed (wall clock, one sign-in at a time):
  start     GET /.auth/oidc/{name}/start        (gateway: discovery cached, state sealed)
  provider  the provider's pages until it redirects back (the provider's own time)
  callback  GET /.auth/oidc/callback           (gateway: code redeemed at the provider,
                                                 ID token verified, session created)
  first     the first proxied request with the new session
"""
import re
import statistics
import sys
import time

import requests


def sign_in(gw, name, ca, who="bench"):
    s = requests.Session()
    # Not from the environment: REQUESTS_CA_BUNDLE would override `verify` and drop the
    # test CA.
    s.trust_env = False
    s.verify = ca
    t = {}
    t0 = time.perf_counter()
    r = s.get(f"{gw}/.auth/oidc/{name}/start?rd=/x", allow_redirects=False, timeout=30)
    assert r.status_code == 302, (r.status_code, r.text[:200])
    t["start"] = time.perf_counter() - t0
    url = r.headers["location"]
    issuer = re.match(r"https://[^/]+", url).group(0)
    t0 = time.perf_counter()
    callback = None
    for _ in range(12):
        r = s.get(url, allow_redirects=False, timeout=30)
        if r.is_redirect:
            loc = r.headers["location"]
            url = loc if loc.startswith("http") else issuer + loc
            if "/.auth/oidc/callback" in url:
                callback = url
                break
            continue
        action = re.search(r'action="([^"]+)"', r.text).group(1)
        prompt = "login" if 'value="login"' in r.text else "consent"
        r = s.post(issuer + action if action.startswith("/") else action,
                   data={"prompt": prompt, "login": who, "password": "any"},
                   allow_redirects=False, timeout=30)
        loc = r.headers["location"]
        url = loc if loc.startswith("http") else issuer + loc
        if "/.auth/oidc/callback" in url:
            callback = url
            break
    assert callback, "the provider never sent the browser back"
    t["provider"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    r = s.get(callback, allow_redirects=False, timeout=30)
    assert r.status_code == 303, (r.status_code, r.text[:300])
    t["callback"] = time.perf_counter() - t0
    cookie = next(c for c in s.cookies if c.name in ("session", "__Host-session"))
    t0 = time.perf_counter()
    r = s.get(f"{gw}/x", headers={"accept": "application/json"}, timeout=30)
    assert r.status_code == 200, r.status_code
    t["first"] = time.perf_counter() - t0
    return f"{cookie.name}={cookie.value}", t


def main():
    mode, gw, name, ca = sys.argv[1:5]
    if mode == "cookie":
        print(sign_in(gw, name, ca)[0])
        return
    n = int(sys.argv[5])
    sign_in(gw, name, ca)  # warm: discovery and keys fetched once
    runs = [sign_in(gw, name, ca, f"bench{i}")[1] for i in range(n)]
    print(f"{n} sign-ins through the provider (one at a time), medians in ms:")
    total = [sum(r.values()) * 1000 for r in runs]
    for phase in ("start", "provider", "callback", "first"):
        v = [r[phase] * 1000 for r in runs]
        print(f"  {phase:<9} {statistics.median(v):8.2f}   (p90 {sorted(v)[int(len(v) * .9) - 1]:.2f})")
    gw_only = [(r["start"] + r["callback"] + r["first"]) * 1000 for r in runs]
    print(f"  {'gateway':<9} {statistics.median(gw_only):8.2f}   (start + callback + first)")
    print(f"  {'total':<9} {statistics.median(total):8.2f}")


if __name__ == "__main__":
    main()
