// gesture.js: a button that grants something (Allow on the consent page,
// Approve on the reviewers' page) takes only a click the person meant.
// Found by review ("double-clickjacking"): a page on another site asks for a
// double-click in a popup, closes the popup on the first press, and the
// second lands on this page, loaded behind it; nothing is framed, so the
// frame headers never apply. So every button[data-gesture] stays disabled
// until this page has been visible and focused for 500 ms without a break
// and then sees the person's own pointer move or key press on it; losing
// visibility or focus disables them again, and so does a change of layout
// (mcpgateGesture.hold(ms): cards moved under the pointer). A page without
// JavaScript cannot grant: the buttons stay disabled.
(function () {
  'use strict';
  const SETTLE_MS = 500;
  let since = 0;        // when the page became visible and focused (0: it is not)
  let ready = false;    // a gesture came after SETTLE_MS
  let heldUntil = 0;    // hold(): no button before then

  function shown() { return document.visibilityState === 'visible' && document.hasFocus(); }
  function ok() { return ready && Date.now() >= heldUntil; }
  // Buttons marked data-gesture="auto" are enabled here; the others are
  // only disabled here, and their page enables them on the
  // "mcpgate-gesture" event when its own state allows (a request still
  // pending, nothing in flight).
  function apply() {
    const on = ok();
    document.querySelectorAll('button[data-gesture]').forEach((b) => {
      if (!on) b.disabled = true;
      else if (b.dataset.gesture === 'auto') b.disabled = false;
    });
    window.dispatchEvent(new Event('mcpgate-gesture'));
  }
  function check() {
    if (!shown()) {
      since = 0;
      ready = false;
    } else if (!since) {
      since = Date.now();
    }
    apply();
  }
  function gesture(ev) {
    if (!ev.isTrusted) return;
    check();
    if (since && Date.now() - since >= SETTLE_MS && !ready) {
      ready = true;
      apply();
    }
  }
  window.mcpgateGesture = {
    ok,
    // disables the buttons for ms (the layout changed under the pointer)
    hold(ms) {
      heldUntil = Math.max(heldUntil, Date.now() + ms);
      apply();
      setTimeout(apply, ms + 10);
    },
  };
  ['pointermove', 'pointerdown', 'keydown'].forEach((t) => window.addEventListener(t, gesture, true));
  ['focus', 'blur'].forEach((t) => window.addEventListener(t, check));
  document.addEventListener('visibilitychange', check);
  // a click that lands before a button is enabled does nothing
  document.addEventListener('click', (ev) => {
    const b = ev.target && ev.target.closest ? ev.target.closest('button[data-gesture]') : null;
    if (b && !ok()) { ev.preventDefault(); ev.stopPropagation(); }
  }, true);
  setInterval(check, 250);
  check();
})();
