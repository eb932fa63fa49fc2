// Countdowns to escalation expiry, refreshed each second. Nothing else:
// every action is a plain form POST with the session's CSRF token.
"use strict";
function tick() {
  const now = Date.now();
  for (const el of document.querySelectorAll("time.countdown")) {
    const left = Math.round((Number(el.dataset.ms) - now) / 1000);
    if (left <= 0) { el.textContent = "expired"; continue; }
    const h = Math.floor(left / 3600), m = Math.floor((left % 3600) / 60), s = left % 60;
    el.textContent = (h ? h + "h " : "") + (h || m ? m + "m " : "") + s + "s left";
  }
}
document.addEventListener("DOMContentLoaded", () => { tick(); setInterval(tick, 1000); });
