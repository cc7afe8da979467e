// stepgate's one script: the passkey pages call navigator.credentials,
// which has no HTML form. It is served from stepgate itself under
// script-src 'self'; every other page works without JavaScript.
(function () {
  "use strict";

  var root = document.getElementById("passkey");
  if (!root) {
    return;
  }
  var button = document.getElementById("passkey-button");
  var status = document.getElementById("passkey-status");
  var form = document.getElementById("passkey-form");
  var nameInput = document.getElementById("passkey-name");

  function say(text, isError) {
    status.textContent = text;
    status.className = isError ? "error" : "note";
    status.hidden = false;
  }

  if (!window.PublicKeyCredential || !navigator.credentials || !navigator.credentials.get) {
    say("This browser cannot use passkeys. Use another way to confirm it's you, or try a recent browser.", true);
    return;
  }
  form.hidden = false;

  function fromB64(s) {
    s = s.replace(/-/g, "+").replace(/_/g, "/");
    while (s.length % 4) {
      s += "=";
    }
    var bin = atob(s);
    var out = new Uint8Array(bin.length);
    for (var i = 0; i < bin.length; i++) {
      out[i] = bin.charCodeAt(i);
    }
    return out.buffer;
  }

  function toB64(buf) {
    var bytes = new Uint8Array(buf);
    var bin = "";
    for (var i = 0; i < bytes.length; i++) {
      bin += String.fromCharCode(bytes[i]);
    }
    return btoa(bin).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  function post(url, body) {
    return fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "Accept": "application/json" },
      body: JSON.stringify(body)
    }).then(function (r) {
      return r.json().then(function (j) {
        if (!r.ok) {
          throw new Error(j.error_description || j.error || "request failed");
        }
        return j;
      });
    });
  }

  function descriptors(list) {
    return (list || []).map(function (c) {
      var d = { type: c.type, id: fromB64(c.id) };
      if (c.transports) {
        d.transports = c.transports;
      }
      return d;
    });
  }

  function common(cred) {
    return {
      id: cred.id,
      rawId: toB64(cred.rawId),
      type: cred.type,
      authenticatorAttachment: cred.authenticatorAttachment || undefined,
      clientExtensionResults: cred.getClientExtensionResults ? cred.getClientExtensionResults() : {}
    };
  }

  function signIn() {
    return post(root.dataset.begin, {}).then(function (opts) {
      var pk = opts.publicKey;
      pk.challenge = fromB64(pk.challenge);
      pk.allowCredentials = descriptors(pk.allowCredentials);
      return navigator.credentials.get({ publicKey: pk });
    }).then(function (cred) {
      var out = common(cred);
      out.response = {
        clientDataJSON: toB64(cred.response.clientDataJSON),
        authenticatorData: toB64(cred.response.authenticatorData),
        signature: toB64(cred.response.signature),
        userHandle: cred.response.userHandle ? toB64(cred.response.userHandle) : undefined
      };
      return post(root.dataset.finish, out);
    });
  }

  function register() {
    return post(root.dataset.begin, { name: nameInput.value }).then(function (opts) {
      var pk = opts.publicKey;
      pk.challenge = fromB64(pk.challenge);
      pk.user.id = fromB64(pk.user.id);
      pk.excludeCredentials = descriptors(pk.excludeCredentials);
      return navigator.credentials.create({ publicKey: pk });
    }).then(function (cred) {
      var out = common(cred);
      out.response = {
        clientDataJSON: toB64(cred.response.clientDataJSON),
        attestationObject: toB64(cred.response.attestationObject),
        transports: cred.response.getTransports ? cred.response.getTransports() : []
      };
      return post(root.dataset.finish, out);
    });
  }

  form.addEventListener("submit", function (ev) {
    ev.preventDefault();
    button.disabled = true;
    say(root.dataset.mode === "create" ? "Follow your browser's prompt to create the passkey\u2026" : "Follow your browser's prompt to use your passkey\u2026", false);
    (root.dataset.mode === "create" ? register() : signIn()).then(function () {
      say("Done.", false);
      window.location.assign(root.dataset.done);
    }).catch(function (err) {
      button.disabled = false;
      if (err && (err.name === "NotAllowedError" || err.name === "AbortError")) {
        say("The passkey prompt was closed or timed out. Try again, or use another way.", true);
      } else if (err && err.name === "InvalidStateError") {
        say("This passkey is already on your account.", true);
      } else {
        say((err && err.message) || "That did not work. Try again.", true);
      }
    });
  });
})();
