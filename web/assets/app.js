// web/assets/app.js — the employee page at /t/{tenant}/ (web/index.html).
// Reads api/me and shows who you are, what your groups allow, the command to
// paste and your access tokens; creates and revokes tokens. Every value from
// the server goes in through textContent or .value, never as markup. Without
// this script the page still offers "Sign in with Okta".
'use strict';

(function () {
  const $ = (id) => document.getElementById(id);
  let csrf = '';

  function el(tag, text, cls) {
    const e = document.createElement(tag);
    if (text !== undefined && text !== null) e.textContent = String(text);
    if (cls) e.className = cls;
    return e;
  }

  function showError(msg) {
    $('error').textContent = msg || '';
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
    else td.textContent = content;
    return td;
  }

  async function errorMessage(res) {
    try {
      const j = await res.json();
      if (j && typeof j.message === 'string' && j.message) return j.message;
    } catch (e) { /* not JSON */ }
    return 'mcpgate answered HTTP ' + res.status + '. Try again in a moment.';
  }

  function signedOut(why) {
    $('signed-in').hidden = true;
    $('signed-out').hidden = false;
    if (why) showError(why);
  }

  function patterns(dl, term, list) {
    if (!list || !list.length) return;
    dl.appendChild(el('dt', term));
    const dd = el('dd');
    list.forEach((p, i) => {
      if (i) dd.appendChild(document.createTextNode(' '));
      dd.appendChild(el('code', p));
    });
    dl.appendChild(dd);
  }

  function renderConnectors(list) {
    const box = $('connectors');
    box.replaceChildren();
    if (!list || !list.length) {
      box.appendChild(el('p', 'No connectors are set up yet.'));
      return;
    }
    list.forEach((c) => {
      const art = el('article', null, 'connector');
      art.appendChild(el('h3', c.name));
      const allow = c.allow || [], approve = c.approve || [], block = c.block || [];
      if (!allow.length && !approve.length) {
        art.appendChild(el('p', 'Nothing allowed.', 'muted'));
      } else {
        const dl = el('dl');
        patterns(dl, 'Allowed', allow);
        patterns(dl, 'Needs approval', approve);
        patterns(dl, 'Blocked', block);
        art.appendChild(dl);
      }
      box.appendChild(art);
    });
  }

  function renderTokens(tokens) {
    const items = (tokens && tokens.items) || [];
    const body = $('tokens-body');
    body.replaceChildren();
    items.forEach((t) => {
      const tr = el('tr');
      tr.appendChild(cell('Name', t.name));
      tr.appendChild(cell('Created', when(t.created) || '—'));
      tr.appendChild(cell('Expires', when(t.expires) || 'never'));
      tr.appendChild(cell('Last used', when(t.last_used) || 'never'));
      const b = el('button', 'Revoke');
      b.type = 'button';
      b.setAttribute('aria-label', 'Revoke token ' + t.name);
      b.addEventListener('click', () => revoke(t.id, b));
      tr.appendChild(cell('', b));
      body.appendChild(tr);
    });
    $('tokens-table').hidden = !items.length;
    $('tokens-none').hidden = !!items.length;
    const allowed = !!(tokens && tokens.allowed);
    $('token-form').hidden = !allowed;
    $('tokens-off').hidden = allowed;
    if (allowed) {
      const max = Math.max(1, Number(tokens.max_days) || 1), days = $('token-days');
      days.max = String(max);
      if (!days.value || Number(days.value) > max) days.value = String(max);
    }
  }

  function renderGrants(grants) {
    const items = grants || [];
    const body = $('grants-body');
    body.replaceChildren();
    items.forEach((g) => {
      const tr = el('tr');
      const name = g.client_name || g.client_id;
      // the name is the application's own choice: shown with its client id
      // (a client metadata document's is its URL), so two applications
      // calling themselves "Claude Code" can be told apart (found by review)
      const app = el('span');
      app.append(name);
      if (g.client_name && g.client_id) {
        app.append(el('br'));
        app.append(el('small', 'name not verified · client ' + g.client_id));
      }
      tr.appendChild(cell('Application', app));
      tr.appendChild(cell('Reaches', g.resource ? 'connector ' + g.resource : 'all your tools'));
      tr.appendChild(cell('First used', when(g.created) || '—'));
      tr.appendChild(cell('Last used', when(g.last_used) || '—'));
      const b = el('button', 'Disconnect');
      b.type = 'button';
      b.setAttribute('aria-label', 'Disconnect ' + name);
      b.addEventListener('click', () => revoke(g.id, b, 'api/grants/'));
      tr.appendChild(cell('', b));
      body.appendChild(tr);
    });
    $('grants-table').hidden = !items.length;
    $('grants-none').hidden = !!items.length;
  }

  function renderServices(list) {
    const items = list || [];
    const body = $('services-body');
    body.replaceChildren();
    items.forEach((c) => {
      const tr = el('tr');
      tr.appendChild(cell('Connector', c.connector));
      tr.appendChild(cell('Status', c.connected ? 'connected' : 'not connected'));
      tr.appendChild(cell('Connected', when(c.connected_at) || '—'));
      let action;
      if (c.kind === 'key') {
        // the person's own API key: typed here, sent once, never shown again
        action = el('form');
        action.className = 'key-form';
        const input = el('input');
        input.type = 'password';
        input.autocomplete = 'off';
        input.required = true;
        input.maxLength = 4096;
        input.setAttribute('aria-label', 'Your key for ' + c.connector + (c.header ? ' (sent as ' + c.header + ')' : ''));
        const save = el('button', c.connected ? 'Replace key' : 'Save key');
        save.type = 'submit';
        action.append(input, save);
        action.addEventListener('submit', (ev) => saveKey(ev, c.connector, c.key_state, input, save));
        if (c.connected) {
          const del = el('button', 'Delete key');
          del.type = 'button';
          del.setAttribute('aria-label', 'Delete your key for ' + c.connector);
          del.addEventListener('click', () => revoke(c.connector, del, 'api/connections/'));
          action.append(del);
        }
      } else if (c.connected) {
        action = el('button', 'Disconnect');
        action.type = 'button';
        action.setAttribute('aria-label', 'Disconnect ' + c.connector);
        action.addEventListener('click', () => revoke(c.connector, action, 'api/connections/'));
      } else {
        action = el('a', 'Connect');
        action.href = c.connect_url;
        action.setAttribute('aria-label', 'Connect ' + c.connector);
      }
      tr.appendChild(cell('', action));
      body.appendChild(tr);
    });
    $('services').hidden = !items.length;
  }

  function render(me) {
    csrf = me.csrf || '';
    document.querySelectorAll('input[name="csrf"]').forEach((i) => { i.value = csrf; });
    $('tenant').textContent = me.tenant || '';
    const u = me.user || {};
    $('me-name').textContent = u.displayName || u.userName || '';
    const detail = [u.displayName ? u.userName : null, u.email && u.email !== u.userName ? u.email : null]
      .filter(Boolean).join(', ');
    $('me-detail').textContent = detail ? ' (' + detail + ')' : '';
    const s = me.session || {}, exp = when(s.expires_at);
    const sess = $('me-session');
    sess.replaceChildren();
    if (exp) sess.append('This browser session ends ', exp, '.');
    const groups = $('groups');
    groups.replaceChildren();
    if (me.groups && me.groups.length) {
      me.groups.forEach((g, i) => {
        if (i) groups.append(', ');
        groups.appendChild(el('strong', g));
      });
    } else {
      groups.textContent = 'none (ask IT to add you to a group)';
    }
    renderConnectors(me.connectors);
    const cmd = me.commands || {};
    $('cmd-oauth').textContent = cmd.oauth || '';
    $('cmd-header').textContent = cmd.header || '';
    renderTokens(me.tokens);
    renderGrants(me.grants);
    renderServices(me.connections);
    $('signed-out').hidden = true;
    $('signed-in').hidden = false;
  }

  async function load() {
    let res;
    try {
      res = await fetch('api/me', { credentials: 'same-origin', cache: 'no-store', headers: { Accept: 'application/json' } });
    } catch (e) {
      showError('Could not reach mcpgate. Check your connection and reload the page.');
      return false;
    }
    if (res.status === 401) {
      signedOut();
      return false;
    }
    if (res.status !== 200) {
      showError(await errorMessage(res));
      return false;
    }
    let me;
    try {
      me = await res.json();
    } catch (e) {
      showError('mcpgate sent a page this browser could not read. Reload to try again.');
      return false;
    }
    showError('');
    render(me);
    return true;
  }

  async function send(method, url, body) {
    const headers = { 'X-CSRF-Token': csrf, Accept: 'application/json' };
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    return fetch(url, {
      method, credentials: 'same-origin', cache: 'no-store', headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  }

  // state: the connector as this page showed it (api/me's key_state); the
  // gateway refuses the key when an administrator changed the connector
  // since, and the page is read again so the person sees it as it is now
  async function saveKey(ev, connector, state, input, button) {
    ev.preventDefault();
    button.disabled = true;
    showError('');
    let res;
    try {
      res = await send('PUT', 'api/connections/' + encodeURIComponent(connector), { key: input.value, state: state || '' });
    } catch (e) {
      showError('Could not reach mcpgate; your key was not saved.');
      button.disabled = false;
      return;
    }
    input.value = '';
    if (res.status === 401) return signedOut('Your session has ended. Sign in again.');
    if (res.status === 409 || res.status === 400) {
      let j = null;
      try { j = await res.json(); } catch (e) { /* not JSON */ }
      const msg = j && typeof j.message === 'string' && j.message ? j.message : 'mcpgate answered HTTP ' + res.status + '.';
      if (j && (j.error === 'connector_changed' || j.error === 'stale_form')) {
        if (await load()) showError(msg);
        return;
      }
      showError(msg);
      button.disabled = false;
      return;
    }
    if (res.status !== 204) {
      showError(await errorMessage(res));
      button.disabled = false;
      return;
    }
    await load();
  }

  async function revoke(id, button, base) {
    button.disabled = true;
    showError('');
    let res;
    try {
      res = await send('DELETE', (base || 'api/tokens/') + encodeURIComponent(id));
    } catch (e) {
      showError('Could not reach mcpgate; nothing was revoked.');
      button.disabled = false;
      return;
    }
    if (res.status === 401) return signedOut('Your session has ended. Sign in again.');
    if (res.status !== 204 && res.status !== 200) {
      showError(await errorMessage(res));
      button.disabled = false;
      return;
    }
    await load();
  }

  async function create(ev) {
    ev.preventDefault();
    const form = $('token-form'), err = $('token-error'), submit = form.querySelector('button[type="submit"]');
    err.textContent = '';
    $('token-new').hidden = true;
    $('token-value').value = '';
    const name = $('token-name').value.trim();
    const days = Number($('token-days').value);
    submit.disabled = true;
    try {
      let res;
      try {
        res = await send('POST', 'api/tokens', { name, expires_days: days });
      } catch (e) {
        err.textContent = 'Could not reach mcpgate; no token was created.';
        return;
      }
      if (res.status === 401) return signedOut('Your session has ended. Sign in again.');
      if (res.status !== 201 && res.status !== 200) {
        err.textContent = await errorMessage(res);
        return;
      }
      let t;
      try {
        t = await res.json();
      } catch (e) {
        err.textContent = 'The token was created but this browser could not read it. Revoke it and try again.';
        await load();
        return;
      }
      $('token-value').value = t.token || '';
      $('token-new').hidden = false;
      $('token-name').value = '';
      await load();
      $('token-value').focus();
      $('token-value').select();
    } finally {
      submit.disabled = false;
    }
  }

  async function copy(ev) {
    const b = ev.target.closest('button[data-copy]');
    if (!b) return;
    const src = $(b.getAttribute('data-copy'));
    const text = 'value' in src ? src.value : src.textContent;
    let ok = false;
    try {
      await navigator.clipboard.writeText(text);
      ok = true;
    } catch (e) {
      // no clipboard API (not a secure context): select it for Ctrl-C
      const r = document.createRange();
      r.selectNodeContents(src);
      const sel = window.getSelection();
      sel.removeAllRanges();
      if (src.select) src.select(); else sel.addRange(r);
      try { ok = document.execCommand('copy'); } catch (e2) { ok = false; }
    }
    if (!b.dataset.label) b.dataset.label = b.textContent;
    b.textContent = ok ? 'Copied' : 'Press Ctrl-C';
    $('copied').textContent = ok ? 'Copied to the clipboard.' : 'Selected: press Ctrl-C to copy.';
    clearTimeout(b.copyTimer);
    b.copyTimer = setTimeout(() => { b.textContent = b.dataset.label; }, 2000);
  }

  $('token-form').addEventListener('submit', create);
  document.addEventListener('click', copy);
  load();
})();
