#!/usr/bin/env python3
"""Sign in through portcullis and a real OpenID Provider (node oidc-provider, the one in
tests/oidc-provider), the way a browser does: start -> the provider's login and consent
pages -> callback -> first proxied request.

  oidc_login.py cookie  GATEWAY PROVIDER CA_FILE      print the session cookie (name=value)
  oidc_login.py latency GATEWAY PROVIDER CA_FILE N    N sign-ins; medians per phase
  oidc_login.py mod-auth-openidc SITE CA_FILE         sign in to Apache + mod_auth_openidc
                                                      (redirect URI SITE/redirect_uri) through
                                                      the same provider pages; print its
                                                      session cookie (name=value)

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


def browser(ca):
    s = requests.Session()
    # Not from the environment: REQUESTS_CA_BUNDLE would override `verify` and drop the
    # test CA.
    s.trust_env = False
    s.verify = ca
    return s


def through_provider(s, url, issuer, back, who):
    """Fill the provider's login and consent pages from the authorization URL on, until
    it redirects to a URL containing `back`; return that URL."""
    for _ in range(12):
        r = s.get(url, allow_redirects=False, timeout=30)
        if r.is_redirect:
            loc = r.headers["location"]
            url = loc if loc.startswith("http") else issuer + loc
            if back in url:
                return url
            continue
        action = re.search(r'action="([^"]+)"', r.text).group(1)
        prompt = "login" if 'value="login"' in r.text else "consent"
        r = s.post(issuer + action if action.startswith("/") else action,
                   data={"prompt": prompt, "login": who, "password": "any"},
                   allow_redirects=False, timeout=30)
        loc = r.headers["location"]
        url = loc if loc.startswith("http") else issuer + loc
        if back in url:
            return url
    raise AssertionError("the provider never sent the browser back")


def sign_in_mod_auth_openidc(site, ca, who="bench"):
    """Apache + mod_auth_openidc: a protected page redirects to the provider, the provider
    back to SITE/redirect_uri, which sets the session cookie and redirects to the page."""
    s = browser(ca)
    r = s.get(f"{site}/x", allow_redirects=False, timeout=30)
    assert r.status_code == 302, (r.status_code, r.text[:200])
    url = r.headers["location"]
    issuer = re.match(r"https://[^/]+", url).group(0)
    back = through_provider(s, url, issuer, f"{site}/redirect_uri", who)
    r = s.get(back, allow_redirects=False, timeout=30)
    assert r.status_code == 302, (r.status_code, r.text[:300])
    r = s.get(f"{site}/x", allow_redirects=False, timeout=30)
    assert r.status_code == 200, (r.status_code, r.text[:300])
    cookie = next(c for c in s.cookies if c.name == "mod_auth_openidc_session")
    return f"{cookie.name}={cookie.value}"


def sign_in(gw, name, ca, who="bench"):
    s = browser(ca)
    t = {}
    t0 = time.perf_counter()
    r = s.get(f"{gw}/.auth/oidc/{name}/start?rd=/x", allow_redirects=False, timeout=30)
    assert r.status_code == 302, (r.status_code, r.text[:200])
    t["start"] = time.perf_counter() - t0
    url = r.headers["location"]
    issuer = re.match(r"https://[^/]+", url).group(0)
    t0 = time.perf_counter()
    callback = through_provider(s, url, issuer, "/.auth/oidc/callback", who)
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
    if sys.argv[1] == "mod-auth-openidc":
        print(sign_in_mod_auth_openidc(sys.argv[2], sys.argv[3]))
        return
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
