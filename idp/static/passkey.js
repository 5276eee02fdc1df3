// Passkeys (WebAuthn): the login step and the registration on the account page. The server's
// options come in a <script type="application/json">; the browser's answer goes back in the
// form's hidden "credential" field. Without WebAuthn the page says so and offers the SMS PIN.
(function () {
  "use strict";
  var form = document.querySelector("form[data-passkey]");
  var optionsNode = document.getElementById("passkey-options");
  if (!form || !optionsNode) { return; }
  var mode = form.getAttribute("data-passkey");
  var button = form.querySelector(mode === "get" ? 'button[name="passkey"]' : 'button[name="register"]');
  var field = form.querySelector('input[name="credential"]');

  if (!window.PublicKeyCredential || !navigator.credentials) {
    var note = document.getElementById("passkey-unsupported");
    if (note) { note.hidden = false; }
    if (button) { button.disabled = true; }
    return;
  }

  function toBytes(text) {
    var b64 = text.replace(/-/g, "+").replace(/_/g, "/");
    while (b64.length % 4) { b64 += "="; }
    var raw = atob(b64);
    var bytes = new Uint8Array(raw.length);
    for (var i = 0; i < raw.length; i++) { bytes[i] = raw.charCodeAt(i); }
    return bytes.buffer;
  }
  function toText(buffer) {
    var bytes = new Uint8Array(buffer);
    var raw = "";
    for (var i = 0; i < bytes.length; i++) { raw += String.fromCharCode(bytes[i]); }
    return btoa(raw).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }
  function descriptors(list) {
    return (list || []).map(function (c) {
      return { type: c.type, id: toBytes(c.id), transports: c.transports };
    });
  }

  var options = JSON.parse(optionsNode.textContent);
  var sending = false;

  function answer(credential) {
    var r = credential.response;
    var json = { id: credential.id, rawId: toText(credential.rawId), type: credential.type,
      clientExtensionResults: credential.getClientExtensionResults(), response: {} };
    json.response.clientDataJSON = toText(r.clientDataJSON);
    if (mode === "get") {
      json.response.authenticatorData = toText(r.authenticatorData);
      json.response.signature = toText(r.signature);
      if (r.userHandle) { json.response.userHandle = toText(r.userHandle); }
    } else {
      json.response.attestationObject = toText(r.attestationObject);
      json.response.transports = r.getTransports ? r.getTransports() : [];
    }
    return JSON.stringify(json);
  }

  form.addEventListener("submit", function (event) {
    if (sending || event.submitter !== button) { return; }
    event.preventDefault();
    var call;
    if (mode === "get") {
      var get = { challenge: toBytes(options.challenge), rpId: options.rpId, timeout: options.timeout,
        userVerification: options.userVerification, allowCredentials: descriptors(options.allowCredentials) };
      call = navigator.credentials.get({ publicKey: get });
    } else {
      var create = { challenge: toBytes(options.challenge), rp: options.rp,
        user: { id: toBytes(options.user.id), name: options.user.name, displayName: options.user.displayName },
        pubKeyCredParams: options.pubKeyCredParams, timeout: options.timeout,
        attestation: options.attestation, authenticatorSelection: options.authenticatorSelection,
        excludeCredentials: descriptors(options.excludeCredentials) };
      call = navigator.credentials.create({ publicKey: create });
    }
    call.then(function (credential) { field.value = answer(credential); })
      .catch(function () { field.value = ""; })
      .then(function () { sending = true; form.requestSubmit(button); });
  });
})();
