// Progressive enhancement of the PIN page; the page works without it.
(function () {
  "use strict";
  var input = document.querySelector('input[name="pin"]');
  // WebOTP: Chrome on Android reads the SMS's last line "@host #PIN" and fills the field.
  if (input && "OTPCredential" in window) {
    var abort = new AbortController();
    if (input.form) {
      input.form.addEventListener("submit", function () { abort.abort(); });
    }
    navigator.credentials.get({ otp: { transport: ["sms"] }, signal: abort.signal })
      .then(function (otp) {
        if (otp && otp.code) { input.value = otp.code; if (input.form) { input.form.requestSubmit(); } }
      })
      .catch(function () { /* the user types the PIN */ });
  }
  // The resend button counts down its cooldown instead of failing when pressed too early.
  var resend = document.querySelector('button[name="resend"]');
  var wait = resend ? parseInt(resend.getAttribute("data-wait") || "0", 10) : 0;
  if (resend && wait > 0) {
    var label = resend.textContent.replace(/\s*\(.*\)\s*$/, "");
    resend.disabled = true;
    var timer = setInterval(function () {
      wait -= 1;
      if (wait <= 0) { clearInterval(timer); resend.disabled = false; resend.textContent = label; }
      else { resend.textContent = label + " (" + wait + " s)"; }
    }, 1000);
  }
})();
