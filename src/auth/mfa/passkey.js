// portcullis: the browser half of passkeys (WebAuthn). Served by the gateway as a static
// file (the pages allow `script-src 'self'`, nothing inline). Each passkey button lives in
// an element with data-passkey="register" | "second-step" | "sign-in", data-options and
// data-finish (the gateway's JSON endpoints) and data-rd (where a sign-in goes). The
// element stays hidden unless this browser can do WebAuthn.
(function () {
  "use strict";
  if (!window.PublicKeyCredential || !navigator.credentials) {
    return;
  }

  function fromB64u(s) {
    var b = atob(s.replace(/-/g, "+").replace(/_/g, "/"));
    var out = new Uint8Array(b.length);
    for (var i = 0; i < b.length; i++) {
      out[i] = b.charCodeAt(i);
    }
    return out.buffer;
  }

  function toB64u(buf) {
    var bytes = new Uint8Array(buf);
    var s = "";
    for (var i = 0; i < bytes.length; i++) {
      s += String.fromCharCode(bytes[i]);
    }
    return btoa(s).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  function post(url, body) {
    return fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
    }).then(function (r) {
      return r
        .json()
        .catch(function () {
          return {};
        })
        .then(function (j) {
          if (!r.ok) {
            var e = new Error(j.message || "The gateway refused (" + r.status + ").");
            e.next = j.next;
            throw e;
          }
          return j;
        });
    });
  }

  // The gateway sends binary fields as base64url; the browser wants ArrayBuffers.
  function creationOptions(o) {
    var pk = o.publicKey;
    pk.challenge = fromB64u(pk.challenge);
    pk.user.id = fromB64u(pk.user.id);
    (pk.excludeCredentials || []).forEach(function (c) {
      c.id = fromB64u(c.id);
    });
    return pk;
  }

  function requestOptions(o) {
    var pk = o.publicKey;
    pk.challenge = fromB64u(pk.challenge);
    (pk.allowCredentials || []).forEach(function (c) {
      c.id = fromB64u(c.id);
    });
    return pk;
  }

  function attestation(c) {
    return {
      id: c.id,
      rawId: toB64u(c.rawId),
      type: c.type,
      response: {
        attestationObject: toB64u(c.response.attestationObject),
        clientDataJSON: toB64u(c.response.clientDataJSON),
        transports: c.response.getTransports ? c.response.getTransports() : undefined,
      },
      extensions: c.getClientExtensionResults ? c.getClientExtensionResults() : {},
    };
  }

  function assertion(c) {
    return {
      id: c.id,
      rawId: toB64u(c.rawId),
      type: c.type,
      response: {
        authenticatorData: toB64u(c.response.authenticatorData),
        clientDataJSON: toB64u(c.response.clientDataJSON),
        signature: toB64u(c.response.signature),
        userHandle: c.response.userHandle ? toB64u(c.response.userHandle) : null,
      },
      extensions: c.getClientExtensionResults ? c.getClientExtensionResults() : {},
    };
  }

  function run(box) {
    var kind = box.dataset.passkey;
    var status = box.querySelector("[role=alert]");
    var button = box.querySelector("button");
    var name = document.getElementById("passkey-name");
    var first =
      kind === "register"
        ? { name: name ? name.value : "" }
        : { mode: kind, rd: box.dataset.rd || "" };
    status.hidden = true;
    button.disabled = true;
    return post(box.dataset.options, first)
      .then(function (o) {
        var ask =
          kind === "register"
            ? navigator.credentials.create({ publicKey: creationOptions(o.options) })
            : navigator.credentials.get({ publicKey: requestOptions(o.options) });
        return ask.then(function (cred) {
          var done = { state: o.state, credential: kind === "register" ? attestation(cred) : assertion(cred) };
          if (kind !== "register") {
            done.mode = kind;
          }
          return post(box.dataset.finish, done);
        });
      })
      .then(function (r) {
        window.location.assign(r.next || "/");
      })
      .catch(function (e) {
        if (e && e.next) {
          window.location.assign(e.next);
          return;
        }
        status.textContent =
          e && e.name === "NotAllowedError"
            ? "The passkey prompt was closed or timed out. Try again."
            : (e && e.message) || "That did not work. Try again.";
        status.hidden = false;
        button.disabled = false;
      });
  }

  document.querySelectorAll("[data-passkey]").forEach(function (box) {
    box.hidden = false;
    box.querySelector("button").addEventListener("click", function () {
      run(box);
    });
  });
})();
