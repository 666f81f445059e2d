// Mamori console. Every value from the server is put into the page as text (textContent,
// input values), never as HTML; links are built only from our own paths with numeric ids or
// URL-encoded query strings. State changes go to the JSON API with the session's CSRF token.
(function () {
  'use strict';
  var body = document.body;
  var page = body.dataset.page;
  if (page === 'login') return;
  var T = JSON.parse(document.getElementById('i18n').textContent);
  var LANG = body.dataset.lang || 'en';
  var TZ = body.dataset.tz || undefined;
  var ROLE = body.dataset.role;
  var CAN_CHANGE = ROLE === 'admin' || ROLE === 'analyst';
  var CSRF = document.querySelector('meta[name="csrf-token"]').getAttribute('content');
  var LEVELS = ['informational', 'low', 'medium', 'high', 'critical'];
  var LEVEL_COLORS = { informational: '#8a94a6', low: '#3b82f6', medium: '#eab308', high: '#f97316', critical: '#dc2626' };
  var PHASES = ['detection_analysis', 'containment', 'eradication', 'recovery', 'post_incident'];

  // The language switch returns to this page.
  document.querySelectorAll('input.back').forEach(function (i) { i.value = location.pathname + location.search; });

  function t(k) { return T[k] || k; }

  // Builds an element: attrs are properties/attributes (never HTML); children are nodes or text.
  function el(tag, attrs) {
    var e = document.createElement(tag);
    if (attrs) {
      Object.keys(attrs).forEach(function (k) {
        var v = attrs[k];
        if (v === null || v === undefined || v === false) return;
        if (k === 'text') e.textContent = String(v);
        else if (k === 'class') e.className = v;
        else if (k === 'href') e.setAttribute('href', safeHref(v));
        else if (k.slice(0, 2) === 'on') e.addEventListener(k.slice(2), v);
        else if (k === 'checked' || k === 'disabled' || k === 'value') e[k] = v;
        else e.setAttribute(k, String(v));
      });
    }
    for (var i = 2; i < arguments.length; i++) {
      var c = arguments[i];
      if (c === null || c === undefined || c === false) continue;
      if (Array.isArray(c)) c.forEach(function (x) { if (x) e.appendChild(typeof x === 'string' ? document.createTextNode(x) : x); });
      else e.appendChild(typeof c === 'string' || typeof c === 'number' ? document.createTextNode(String(c)) : c);
    }
    return e;
  }

  // Only our own absolute paths are links; anything else (javascript:, data:, //host) is dropped.
  function safeHref(h) {
    h = String(h);
    return (h.charAt(0) === '/' && h.charAt(1) !== '/' && h.charAt(1) !== '\\') ? h : '#';
  }

  function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); return node; }

  function flash(msg) {
    var f = document.getElementById('flash');
    f.textContent = msg;
    f.classList.remove('hidden', 'ok');
    f.classList.add('error');
  }

  function api(path, opts) {
    opts = opts || {};
    var headers = { 'Accept': 'application/json' };
    if (opts.method && opts.method !== 'GET') {
      headers['X-CSRF-Token'] = CSRF;
      headers['Content-Type'] = 'application/json';
    }
    return fetch(path, {
      method: opts.method || 'GET',
      headers: headers,
      credentials: 'same-origin',
      body: opts.body === undefined ? undefined : JSON.stringify(opts.body)
    }).then(function (r) {
      if (r.status === 401) { location.href = '/login'; throw new Error('signed out'); }
      return r.json().catch(function () { return {}; }).then(function (j) {
        if (!r.ok) {
          var err = new Error((r.status === 403 ? t('forbidden') + ' ' : '') + (j.error || r.statusText));
          err.status = r.status;
          throw err;
        }
        return j;
      });
    });
  }

  function post(path, b) {
    return api(path, { method: 'POST', body: b || {} });
  }

  var fmtCache = null;
  function fmtTime(iso) {
    if (!iso) return '';
    var d = new Date(iso);
    if (isNaN(d)) return String(iso);
    if (!fmtCache) {
      var o = { year: 'numeric', month: '2-digit', day: '2-digit', hour: '2-digit', minute: '2-digit', second: '2-digit', hour12: false, timeZoneName: 'short' };
      try { fmtCache = new Intl.DateTimeFormat(LANG === 'ja' ? 'ja-JP' : 'en-GB', Object.assign({ timeZone: TZ }, o)); }
      catch (e) { fmtCache = new Intl.DateTimeFormat(LANG === 'ja' ? 'ja-JP' : 'en-GB', o); }
    }
    return fmtCache.format(d);
  }

  function tzDate(ts) {
    var d = new Date(ts * 1000);
    if (TZ && window.uPlot && uPlot.tzDate) { try { return uPlot.tzDate(d, TZ); } catch (e) { /* browser zone */ } }
    return d;
  }

  // A title in the page's language: alerts carry their rule's Japanese title in
  // `details.title_ja`; incidents and the alerts linked to them carry `title_ja`.
  function alertTitle(a) {
    if (!a) return '';
    var ja = typeof a.title_ja === 'string' ? a.title_ja
      : (a.details && typeof a.details.title_ja === 'string' ? a.details.title_ja : '');
    return LANG === 'ja' && ja.trim() ? ja : a.title;
  }
  function levelBadge(l) { return el('span', { class: 'lvl lvl-' + (LEVELS.indexOf(l) >= 0 ? l : 'informational'), text: LEVELS.indexOf(l) >= 0 ? t('level_' + l) : l }); }

  function phaseName(p) { return t('phase_' + p); }

  // Entities of an alert (group-by values and matched fields), as [field, value].
  function entities(a) {
    var out = [];
    var d = a.details || {};
    ['group', 'fields'].forEach(function (k) {
      var m = d[k];
      if (m && typeof m === 'object') Object.keys(m).forEach(function (f) {
        var v = m[f];
        if (typeof v === 'string' || typeof v === 'number') out.push([f, String(v)]);
      });
    });
    if (typeof d.host === 'string') out.push(['host.name', d.host]);
    return out;
  }

  // The search index keeps the host in its own `host` field: `host.name:x` is not a query
  // it understands (see docs/store-format.md), so host filters are written `host:x`.
  function queryField(f) { return f === 'host.name' ? 'host' : f; }

  function searchLink(field, value) {
    field = queryField(field);
    var q = field ? field + ':"' + String(value).replace(/["\\]/g, '\\$&') + '"' : '"' + String(value).replace(/["\\]/g, '\\$&') + '"';
    // A pivot looks at all time (an entity query matches few events); the bare page shows 24 h.
    return '/search?q=' + encodeURIComponent(q) + '&range=';
  }

  function kvTable(obj) {
    var tb = el('tbody');
    Object.keys(obj || {}).sort().forEach(function (k) {
      var v = obj[k];
      tb.appendChild(el('tr', null, el('th', { text: k }), el('td', { text: typeof v === 'string' ? v : JSON.stringify(v) })));
    });
    return el('table', { class: 'kv' }, tb);
  }

  // Axis labels in the user's language and zone (uPlot's own are English).
  var axisFmt = {};
  function axisLabel(ts, span) {
    var key = span > 2 * 86400 ? 'd' : 'h';
    if (!axisFmt[key]) {
      var o = key === 'd' ? { month: '2-digit', day: '2-digit' } : { hour: '2-digit', minute: '2-digit', hour12: false };
      try { axisFmt[key] = new Intl.DateTimeFormat(LANG === 'ja' ? 'ja-JP' : 'en-GB', Object.assign({ timeZone: TZ }, o)); }
      catch (e) { axisFmt[key] = new Intl.DateTimeFormat(LANG === 'ja' ? 'ja-JP' : 'en-GB', o); }
    }
    return axisFmt[key].format(new Date(ts * 1000));
  }

  function chart(container, opts, data) {
    clear(container);
    if (!window.uPlot) { container.appendChild(el('p', { text: t('not_available') })); return null; }
    opts.width = Math.max(200, container.clientWidth || 600);
    opts.tzDate = tzDate;
    if (opts.series && opts.series[0]) opts.series[0].label = t('time');
    if (!opts.axes) opts.axes = [{ values: function (u, splits) {
      var span = splits.length > 1 ? splits[splits.length - 1] - splits[0] : 0;
      return splits.map(function (v) { return axisLabel(v, span); });
    } }, {}];
    return new uPlot(opts, data, container);
  }

  // ------------------------------------------------------------------------------------------
  // Overview

  function overview() {
    api('/api/v1/console/overview').then(function (o) {
      var series = [{}];
      var data = [o.hours];
      LEVELS.forEach(function (l) {
        series.push({ label: t('level_' + l), stroke: LEVEL_COLORS[l], fill: LEVEL_COLORS[l] + '33', width: 2 });
        data.push(o.alerts_by_level[l] || []);
      });
      chart(document.getElementById('alerts-chart'), { height: 220, series: series, scales: { x: { time: true } } }, data);
      var ph = clear(document.getElementById('phases'));
      if (!o.incidents_by_phase) ph.appendChild(el('p', { text: t('not_available') }));
      else ph.appendChild(el('table', { class: 'kv' }, el('tbody', null, PHASES.map(function (p) {
        return el('tr', null, el('th', null, el('a', { href: '/incidents', text: phaseName(p) })), el('td', { class: 'num', text: o.incidents_by_phase[p] || 0 }));
      }))));
      var f = clear(document.getElementById('in-force'));
      if (!o.responses_in_force.length) f.appendChild(el('p', { class: 'muted', text: t('none') }));
      else f.appendChild(el('table', { class: 'list' }, el('tbody', null, o.responses_in_force.map(function (r) {
        return el('tr', null, el('td', { text: actionText(r.action) }), el('td', { text: t('expires') + ' ' + fmtTime(r.expires_at) }));
      }))));
    }).catch(function (e) { flash(e.message); });
    sources();
    backups();
  }

  // Backup checks (`[[backup]]`): the latest result of each entry, failures first, with its
  // findings in the user's language, and the 3-2-1 judgement of each protected system.
  function backups() {
    var box = document.getElementById('backups');
    fetch('/api/v1/backups?history=0', { credentials: 'same-origin', headers: { Accept: 'application/json' } }).then(function (r) {
      if (r.status === 404) { clear(box).appendChild(el('p', { class: 'muted', id: 'backups-na', text: t('not_available') })); return null; }
      if (!r.ok) throw new Error('backups: ' + r.status);
      return r.json();
    }).then(function (j) {
      if (!j) return;
      clear(box);
      var list = (j.backups || []).slice();
      if (!list.length) { box.appendChild(el('p', { class: 'muted', id: 'backups-none', text: t('none') })); return; }
      var rank = { failed: 0, warning: 1, passed: 2 };
      var status = function (b) { return b.latest && rank.hasOwnProperty(b.latest.status) ? b.latest.status : ''; };
      list.sort(function (a, b) { return (status(a) ? rank[status(a)] : 3) - (status(b) ? rank[status(b)] : 3); });
      var tb = el('tbody');
      box.appendChild(el('table', { class: 'list', id: 'backups-table' },
        el('thead', null, el('tr', null, el('th', { text: t('name') }), el('th', { text: t('kind') }), el('th', { text: t('state') }), el('th', { text: t('backup_last_check') }), el('th', { text: t('backup_findings') }))),
        tb));
      list.forEach(function (b) {
        var st = status(b);
        var findings = (b.latest && Array.isArray(b.latest.findings) ? b.latest.findings : []).map(function (f) {
          return el('li', { text: (LANG === 'ja' ? f.ja : f.en) || f.code || '' });
        });
        tb.appendChild(el('tr', { class: 'backup-' + (st || 'never') },
          el('td', { text: b.name }),
          el('td', { text: b.kind }),
          el('td', null, el('span', { class: 'state ' + (st === 'failed' ? 'state-silent' : st === 'warning' ? 'state-collapsed' : 'state-ok'), text: st ? t('backup_' + st) : t('backup_never') })),
          el('td', { text: b.latest ? fmtTime(b.latest.finished) : '—' }),
          el('td', null, findings.length ? el('ul', null, findings) : '')));
      });
      (j.systems || []).forEach(function (s) {
        var r = s.judgement || {};
        box.appendChild(el('p', { class: 'rule321' }, t('rule321') + ' — ' + (r.system || '') + ': ' +
          (s.satisfied ? t('rule321_met') : t('rule321_missing')) +
          ' (' + t('rule321_copies') + ' ' + r.copies + ', ' + t('rule321_media') + ' ' + (r.media || []).length + ', ' +
          t('rule321_offsite') + ' ' + r.offsite + ', ' + t('rule321_offline') + ' ' + r.offline + ')'));
      });
    }).catch(function (e) { clear(box).appendChild(el('p', { class: 'muted', text: t('error') + ': ' + e.message })); });
  }

  function sources() {
    var box = document.getElementById('sources');
    fetch('/api/v1/sources', { credentials: 'same-origin', headers: { Accept: 'application/json' } }).then(function (r) {
      if (r.status === 404) { clear(box).appendChild(el('p', { class: 'muted', id: 'sources-na', text: t('not_available') })); return null; }
      if (!r.ok) throw new Error('sources: ' + r.status);
      return r.json();
    }).then(function (j) {
      if (!j) return;
      clear(box);
      var list = j.sources || [];
      if (!list.length) { box.appendChild(el('p', { class: 'muted', text: t('none') })); return; }
      var tb = el('tbody');
      box.appendChild(el('table', { class: 'list', id: 'sources-table' },
        el('thead', null, el('tr', null, el('th', { text: t('source') }), el('th', { text: t('kind') }), el('th', { text: t('state') }), el('th', { text: t('last_seen') }), el('th', { text: t('events_last_hour') }), el('th', { text: '48h' }))),
        tb));
      list.forEach(function (s) {
        var spark = el('div', { class: 'spark' });
        var state = ['ok', 'silent', 'collapsed', 'new'].indexOf(s.state) >= 0 ? s.state : 'ok';
        tb.appendChild(el('tr', { class: 'src-' + state },
          el('td', null, el('a', { href: searchLink('host.name', s.source), text: s.source })),
          el('td', { text: s.kind }),
          el('td', null, el('span', { class: 'state state-' + state, text: t('state_' + state) })),
          el('td', { text: fmtTime(s.last_seen) }),
          el('td', { class: 'num', text: s.events_last_hour }),
          el('td', null, spark)));
        var h = Array.isArray(s.hourly) ? s.hourly.map(Number) : [];
        if (window.uPlot && h.length) {
          var now = Math.floor(Date.now() / 3600000) * 3600;
          var xs = h.map(function (_, i) { return now - (h.length - 1 - i) * 3600; });
          new uPlot({ width: 160, height: 32, legend: { show: false }, cursor: { show: false }, axes: [{ show: false }, { show: false }], scales: { x: { time: true } }, series: [{}, { stroke: state === 'ok' || state === 'new' ? '#16a34a' : '#dc2626', width: 1.5, fill: '#16a34a22' }] }, [xs, h], spark);
        }
      });
    }).catch(function (e) { clear(box).appendChild(el('p', { class: 'muted', text: t('error') + ': ' + e.message })); });
  }

  // A word of the product in the page's language: the table's entry for prefix + key, or the
  // key itself when the table has none (a kind added later reads as its name).
  function tw(prefix, key) { return T[prefix + key] || key; }

  // A history entry's from/to value in words: kinds, levels, phases and response kinds.
  function historyValue(action, v) {
    switch (action) {
      case 'created': case 'kind': return tw('ikind_', v);
      case 'severity': return tw('level_', v);
      case 'phase': case 'closed': case 'reopened': return tw('phase_', v);
      case 'action': return tw('tl_', v);
      default: return v;
    }
  }

  // What a recorded action did, in one line: the action, its outcome, dry run, reason, agent;
  // notifications as channel → contact: outcome.
  function actionSummary(d) {
    if (Array.isArray(d)) {
      return d.map(function (x) {
        if (!x || typeof x !== 'object') return String(x);
        return (x.channel || '') + ' → ' + (x.contact || '') + ': ' + (x.ok ? t('outcome_ok') : t('outcome_failed') + (x.error ? ' (' + x.error + ')' : ''));
      }).join('; ');
    }
    if (!d || typeof d !== 'object') return String(d == null ? '' : d);
    var parts = [];
    if (d.action) parts.push(actionText(d.action));
    else if (d.kind && d.target) parts.push(d.kind + ' ' + d.target);
    if (d.outcome !== undefined && d.outcome !== null) {
      var ok = d.outcome === 'ok' || d.outcome.ok === true || d.outcome.status === 'ok';
      parts.push(ok ? t('outcome_ok') : t('outcome_failed') + ': ' + JSON.stringify(d.outcome));
    }
    if (d.dry_run) parts.push(t('dry_run'));
    if (d.agent) parts.push(t('tl_agent') + ' ' + d.agent);
    if (d.reason) parts.push(d.reason);
    return parts.length ? parts.join(' · ') : JSON.stringify(d);
  }

  function actionText(a) {
    if (!a || typeof a !== 'object') return String(a || '');
    var kind = a.kind || a.type || Object.keys(a)[0] || '';
    var parts = [];
    Object.keys(a).forEach(function (k) { if (k !== 'kind' && k !== 'type') parts.push(k + '=' + (typeof a[k] === 'object' ? JSON.stringify(a[k]) : a[k])); });
    return kind + (parts.length ? ' ' + parts.join(' ') : '');
  }

  // ------------------------------------------------------------------------------------------
  // Alerts

  function alerts() {
    var form = document.getElementById('alert-filters');
    var tbody = document.querySelector('#alerts-table tbody');
    var selected = {};
    var last = '';
    var initial = new URLSearchParams(location.search);
    ['status', 'min_level', 'rule_id', 'text'].forEach(function (k) {
      if (initial.get(k) && form.elements[k]) form.elements[k].value = initial.get(k);
    });
    loadAssignees().then(function () {
      if (initial.has('assignee')) { form.elements.assignee.value = initial.get('assignee'); last = ''; refresh(); }
    });
    function query() {
      var p = new URLSearchParams();
      p.set('limit', '200');
      var fd = new FormData(form);
      ['status', 'min_level', 'rule_id'].forEach(function (k) { var v = (fd.get(k) || '').trim(); if (v) p.set(k, v); });
      var h = fd.get('since');
      if (h) p.set('since', new Date(Date.now() - Number(h) * 3600000).toISOString());
      var who = fd.get('assignee');
      if (who !== null && who !== '*') p.set('assignee', who);
      return p.toString();
    }
    function refresh() {
      api('/api/v1/alerts?' + query()).then(function (j) {
        var text = (new FormData(form).get('text') || '').toLowerCase();
        var rows = (j.alerts || []).filter(function (a) {
          return !text || JSON.stringify([a.group_key, a.details]).toLowerCase().indexOf(text) >= 0;
        });
        var key = JSON.stringify(rows.map(function (a) { return [a.id, a.status, a.count, a.assignee]; })) + text;
        if (key === last) return;
        last = key;
        clear(tbody);
        if (!rows.length) tbody.appendChild(el('tr', null, el('td', { colspan: 9, class: 'muted', text: t('no_results') })));
        rows.forEach(function (a) {
          var ents = entities(a).slice(0, 4).map(function (e) { return el('span', { class: 'chip', text: e[0] + '=' + e[1] }); });
          tbody.appendChild(el('tr', { class: 'alert-row', 'data-id': a.id },
            el('td', null, CAN_CHANGE ? el('input', { type: 'checkbox', class: 'sel', checked: !!selected[a.id], onchange: function (ev) { selected[a.id] = ev.target.checked; } }) : null),
            el('td', { text: fmtTime(a.last_seen) }),
            el('td', null, levelBadge(a.level)),
            el('td', null, el('a', { href: '/alerts/' + Number(a.id), text: alertTitle(a) })),
            el('td', { class: 'mono', text: a.rule_id }),
            el('td', null, ents),
            el('td', { class: 'num', text: a.count }),
            el('td', { text: t(a.status) }),
            el('td', { class: 'assignee', text: a.assignee || '—' })));
        });
      }).catch(function (e) { flash(e.message); });
    }
    form.addEventListener('change', function () { last = ''; refresh(); });
    form.addEventListener('input', function () { last = ''; refresh(); });
    form.addEventListener('submit', function (e) { e.preventDefault(); });
    var ackBtn = document.getElementById('ack-selected');
    if (ackBtn) ackBtn.addEventListener('click', function () {
      var ids = Object.keys(selected).filter(function (k) { return selected[k]; });
      Promise.all(ids.map(function (id) { return post('/api/v1/alerts/' + Number(id) + '/ack', { note: '' }); }))
        .then(function () { selected = {}; last = ''; refresh(); })
        .catch(function (e) { flash(e.message); });
    });
    var assignBtn = document.getElementById('assign-selected');
    if (assignBtn) assignBtn.addEventListener('click', function () {
      var ids = Object.keys(selected).filter(function (k) { return selected[k]; }).map(Number);
      if (!ids.length) return;
      post('/api/v1/alerts/assign', { ids: ids, assignee: document.getElementById('bulk-assignee').value || null })
        .then(function () { selected = {}; last = ''; refresh(); })
        .catch(function (e) { flash(e.message); });
    });
    refresh();
    setInterval(refresh, 1000);
  }

  // Fills every `.assignee-list` select with the console users alerts can be assigned to.
  function loadAssignees() {
    return api('/api/v1/console/assignees').then(function (j) {
      document.querySelectorAll('select.assignee-list').forEach(function (sel) {
        (j.users || []).forEach(function (u) { sel.appendChild(el('option', { value: u, text: u })); });
      });
      return j.users || [];
    }).catch(function () { return []; });
  }

  function alertDetail(id) {
    var box = document.getElementById('alert-detail');
    api('/api/v1/alerts/' + id).then(function (a) {
      clear(box);
      var d = a.details || {};
      var who = el('select', { id: 'alert-assign-to', class: 'assignee-list' }, el('option', { value: '', text: t('unassigned') }));
      var assignBox = el('span', null, el('label', null, t('assignee') + ' ', who), ' ', el('button', { id: 'alert-assign', text: t('assign'), onclick: function () {
        post('/api/v1/alerts/assign', { ids: [Number(id)], assignee: who.value || null }).then(function () { alertDetail(id); }).catch(function (e) { flash(e.message); });
      } }));
      var tags = (d.tags || []).map(function (tg) { return el('span', { class: 'chip tag', text: tg }); });
      var why = LANG === 'ja' ? (d.description_ja || d.description) : d.description;
      var head = el('section', { class: 'card' },
        el('h2', null, levelBadge(a.level), ' ', alertTitle(a)),
        el('table', { class: 'kv' }, el('tbody', null,
          el('tr', null, el('th', { text: t('rule') }), el('td', { class: 'mono', text: a.rule_id })),
          el('tr', null, el('th', { text: t('status') }), el('td', { id: 'alert-status', text: t(a.status) + (a.ack ? ' (' + a.ack.by + ', ' + fmtTime(a.ack.at) + ')' : '') })),
          el('tr', null, el('th', { text: t('time') }), el('td', { text: fmtTime(a.received_at) + ' — ' + fmtTime(a.last_seen) })),
          el('tr', null, el('th', { text: t('count') }), el('td', { text: a.count })),
          el('tr', null, el('th', { text: t('assignee') }), el('td', { id: 'alert-assignee', text: a.assignee || '—' })),
          el('tr', null, el('th', { text: t('attack_tags') }), el('td', null, tags.length ? tags : t('none'))))),
        why ? el('div', null, el('h3', { text: t('why_fired') }), el('p', { text: why })) : null,
        el('h3', { text: t('entities') }),
        el('ul', { class: 'ents' }, entities(a).map(function (e) {
          return el('li', null, el('span', { class: 'mono', text: e[0] + ' = ' + e[1] }), ' ', el('a', { class: 'pivot', href: searchLink(e[0].indexOf('.') > 0 ? e[0] : '', e[1]), text: t('search_pivot') }));
        })),
        el('div', { class: 'actions' },
          CAN_CHANGE && a.status === 'open' ? el('button', { id: 'ack', text: t('acknowledge'), onclick: function () {
            post('/api/v1/alerts/' + id + '/ack', { note: '' }).then(function () { alertDetail(id); }).catch(function (e) { flash(e.message); });
          } }) : null,
          CAN_CHANGE ? assignBox : null,
          el('span', { id: 'incident-link' })),
        el('h3', { text: t('fields') }), kvTable(d));
      box.appendChild(head);
      if (CAN_CHANGE) loadAssignees().then(function () { who.value = a.assignee || ''; });
      var evs = el('section', { class: 'card' }, el('h2', { text: t('matched_events') }));
      box.appendChild(evs);
      (a.event_seqs || []).slice(0, 20).forEach(function (seq) {
        api('/api/v1/events/' + Number(seq)).then(function (e) {
          evs.appendChild(eventBox(e));
        }).catch(function () { evs.appendChild(el('p', { class: 'muted', text: '#' + seq + ': ' + t('not_available') })); });
      });
      findIncident(a.id);
    }).catch(function (e) { flash(e.message); });
  }

  function findIncident(alertId) {
    api('/api/v1/incidents?limit=50').then(function (j) {
      var list = j.incidents || [];
      (function next(i) {
        if (i >= list.length) return;
        api('/api/v1/incidents/' + Number(list[i].id)).then(function (inc) {
          if ((inc.alerts || []).some(function (x) { return x.alert_id === alertId; })) {
            clear(document.getElementById('incident-link')).appendChild(el('a', { class: 'button', id: 'open-incident', href: '/incidents/' + Number(inc.id), text: t('open_incident') + ' #' + inc.id }));
          } else next(i + 1);
        });
      })(0);
    }).catch(function () { /* incidents disabled */ });
  }

  function eventBox(e, onField) {
    var fields = e.fields || {};
    var tb = el('tbody');
    Object.keys(fields).sort().forEach(function (k) {
      var v = fields[k];
      var s = typeof v === 'string' ? v : JSON.stringify(v);
      tb.appendChild(el('tr', null, el('th', { text: k }), el('td', null, onField
        ? el('a', { href: '#', class: 'fv', onclick: function (ev) { ev.preventDefault(); onField(k, s); }, text: s })
        : el('a', { href: searchLink(k, s), class: 'fv', text: s }))));
    });
    return el('div', { class: 'event' },
      el('div', { class: 'muted', text: '#' + e.seq + ' · ' + fmtTime(e.time || e.received_at) + ' · ' + (e.host || '') + ' · ' + e.source + ' · ' + e.format }),
      el('h4', { text: t('raw') }), el('pre', { class: 'raw', text: e.raw }),
      el('h4', { text: t('fields') }), el('table', { class: 'kv' }, tb));
  }

  // ------------------------------------------------------------------------------------------
  // Incidents

  function incidents() {
    var board = document.getElementById('board');
    api('/api/v1/incidents?status=open&limit=500').then(function (j) {
      clear(board);
      PHASES.forEach(function (p) {
        var items = (j.incidents || []).filter(function (i) { return i.phase === p; });
        board.appendChild(el('section', { class: 'col', 'data-phase': p },
          el('h2', null, phaseName(p), ' ', el('small', { text: '(' + items.length + ')' })),
          items.map(function (i) {
            return el('a', { class: 'inc-card', href: '/incidents/' + Number(i.id) },
              el('div', null, levelBadge(i.severity), ' #', String(i.id)),
              el('div', { class: 'inc-title', text: alertTitle(i) }),
              el('div', { class: 'muted', text: fmtTime(i.updated_at) + (i.assignee ? ' · ' + i.assignee : '') }));
          })));
      });
    }).catch(function (e) { flash(e.message); });
  }

  function incidentDetail(id) {
    var box = document.getElementById('incident-detail');
    Promise.all([api('/api/v1/incidents/' + id), api('/api/v1/responses').catch(function () { return {}; })]).then(function (r) {
      var inc = r[0];
      var resp = r[1] || {};
      document.getElementById('inc-title').textContent = alertTitle(inc);
      clear(box);
      var phaseSel = el('select', { id: 'phase-select' }, PHASES.map(function (p) { return el('option', { value: p, text: phaseName(p), selected: p === inc.phase ? 'selected' : null }); }));
      var why = el('input', { id: 'phase-why', placeholder: t('reason'), size: 40 });
      var assignee = el('input', { id: 'assignee', value: inc.assignee || '', size: 16 });
      var state = el('section', { class: 'card' },
        el('table', { class: 'kv' }, el('tbody', null,
          el('tr', null, el('th', { text: t('level') }), el('td', null, levelBadge(inc.severity))),
          el('tr', null, el('th', { text: t('phase') }), el('td', { id: 'phase', text: phaseName(inc.phase) + (inc.status === 'closed' ? ' (' + t('phase_closed') + ')' : '') })),
          el('tr', null, el('th', { text: t('kind') }), el('td', { text: t('ikind_' + inc.kind) })),
          el('tr', null, el('th', { text: t('assignee') }), el('td', { id: 'assignee-now', text: inc.assignee || '—' })),
          el('tr', null, el('th', { text: t('entities') }), el('td', null, (inc.entities || []).map(function (e) {
            return el('a', { class: 'chip', href: searchLink(e.field || e.kind || '', e.value), text: (e.field || e.kind || '') + '=' + e.value });
          }))))),
        CAN_CHANGE ? el('div', { class: 'actions' },
          el('label', null, t('move_to') + ' ', phaseSel), why,
          el('button', { id: 'phase-go', text: t('change_phase'), onclick: function () {
            post('/api/v1/incidents/' + id + '/phase', { phase: phaseSel.value, why: why.value || null }).then(function () { incidentDetail(id); }).catch(function (e) { flash(e.message); });
          } }),
          el('label', null, t('assignee') + ' ', assignee),
          el('button', { id: 'assign-go', text: t('assign'), onclick: function () {
            post('/api/v1/incidents/' + id + '/assign', { assignee: assignee.value || null }).then(function () { incidentDetail(id); }).catch(function (e) { flash(e.message); });
          } })) : null);
      box.appendChild(state);

      // Playbook tasks.
      var tasks = el('section', { class: 'card' }, el('h2', { text: t('tasks') }));
      PHASES.forEach(function (p) {
        var ts = (inc.tasks || []).filter(function (x) { return x.phase === p; });
        if (!ts.length) return;
        tasks.appendChild(el('h3', { text: phaseName(p) }));
        tasks.appendChild(el('ul', { class: 'tasks' }, ts.map(function (x) {
          return el('li', null, el('label', null,
            el('input', { type: 'checkbox', class: 'task', 'data-task': x.id, checked: x.done, disabled: x.done || !CAN_CHANGE, onchange: function () {
              post('/api/v1/incidents/' + id + '/tasks/' + Number(x.id) + '/done').then(function () { incidentDetail(id); }).catch(function (e) { flash(e.message); });
            } }),
            ' ', LANG === 'ja' ? x.text_ja : x.text_en,
            x.done ? el('small', { class: 'muted', text: ' ✓ ' + (x.done_by || '') + ' ' + fmtTime(x.done_at) }) : null));
        })));
      });
      box.appendChild(tasks);

      // Response actions: suggestions to approve, actions to roll back.
      var actions = inc.actions || [];
      var approvedPlans = {}, rolledBack = {}, rejected = {};
      actions.forEach(function (a) {
        var d = a.detail || {};
        if (a.kind === 'response_rejected') rejected[d.id] = { by: a.by, reason: d.reason };
        if (a.kind === 'response_approved' || a.kind === 'response_executed') approvedPlans[d.plan] = true;
        if (a.kind === 'response_rolled_back') rolledBack[d.id] = true;
      });
      var pendingIds = {};
      (resp.pending || []).forEach(function (p) { pendingIds[p.id] = true; });
      var rs = el('section', { class: 'card', id: 'responses' }, el('h2', { text: t('responses') }));
      var any = false;
      actions.forEach(function (a) {
        var d = a.detail || {};
        if (a.kind === 'response_suggested') {
          any = true;
          var open = CAN_CHANGE && !approvedPlans[d.id] && !rejected[d.id] && pendingIds[d.id];
          var whyNot = el('input', { class: 'why', placeholder: t('reject_reason'), maxlength: 2000, 'data-plan': d.id });
          rs.appendChild(el('div', { class: 'resp' }, el('span', { class: 'chip', text: t('suggested') }), ' ', actionText(d.action), ' — ', el('span', { class: 'muted', text: d.reason || '' }), ' ',
            open ? el('button', { class: 'approve', 'data-plan': d.id, text: t('approve'), onclick: function () {
              post('/api/v1/incidents/' + id + '/responses/' + Number(d.id) + '/approve').then(function () { incidentDetail(id); }).catch(function (e) { flash(e.message); });
            } }) : null,
            open ? ' ' : null, open ? whyNot : null,
            open ? el('button', { class: 'reject', 'data-plan': d.id, text: t('reject'), onclick: function () {
              if (!whyNot.value.trim()) { whyNot.focus(); flash(t('reject_reason')); return; }
              post('/api/v1/incidents/' + id + '/responses/' + Number(d.id) + '/reject', { reason: whyNot.value.trim() }).then(function () { incidentDetail(id); }).catch(function (e) { flash(e.message); });
            } }) : null,
            rejected[d.id] ? el('span', { class: 'chip rejected', text: t('rejected') + ' (' + (rejected[d.id].by || '') + '): ' + (rejected[d.id].reason || '') }) : null));
        }
        if (a.kind === 'response_approved' || a.kind === 'response_executed') {
          any = true;
          var ok = d.outcome && (d.outcome.ok === true || d.outcome === 'ok' || d.outcome.status === 'ok');
          rs.appendChild(el('div', { class: 'resp' }, el('span', { class: 'chip', text: a.kind === 'response_approved' ? t('approve') : t('automatic') }), ' ', actionText(d.action), ' · ', fmtTime(d.at), ' · ', (d.dry_run ? t('dry_run') + ' · ' : ''), el('span', { class: ok ? 'outcome ok' : 'outcome failed', text: ok ? t('outcome_ok') : t('outcome_failed') + ': ' + JSON.stringify(d.outcome || '') }), ' ',
            CAN_CHANGE && !rolledBack[d.id] ? el('button', { class: 'rollback', 'data-record': d.id, text: t('rollback'), onclick: function () {
              post('/api/v1/incidents/' + id + '/responses/' + Number(d.id) + '/rollback').then(function () { incidentDetail(id); }).catch(function (e) { flash(e.message); });
            } }) : (rolledBack[d.id] ? el('span', { class: 'chip', text: t('rollback') + ' ✓' }) : null)));
        }
      });
      if (!any) rs.appendChild(el('p', { class: 'muted', text: t('none') }));
      box.appendChild(rs);

      // Evidence.
      var ev = el('section', { class: 'card', id: 'evidence' }, el('h2', { text: t('evidence') }),
        el('ul', null, (inc.evidence || []).map(function (x) { return el('li', { class: 'mono', text: x }); })));
      // The incident report (NIST phases, evidence, indicators) in the page's language.
      var rep = '/api/v1/incidents/' + encodeURIComponent(id) + '/report?lang=' + encodeURIComponent(LANG);
      ev.appendChild(el('p', { id: 'report-links' }, t('report') + ': ',
        el('a', { id: 'report-pdf', href: rep + '&format=pdf', download: 'incident-' + id + '-' + LANG + '.pdf', text: 'PDF' }), ' · ',
        el('a', { id: 'report-html', href: rep + '&format=html', download: 'incident-' + id + '-' + LANG + '.html', text: 'HTML' })));
      if (CAN_CHANGE) ev.appendChild(el('button', { id: 'export-evidence', text: t('export_evidence'), onclick: function (e) {
        e.target.disabled = true;
        post('/api/v1/incidents/' + id + '/evidence').then(function (r) {
          ev.appendChild(el('p', { id: 'bundle' }, el('a', { id: 'bundle-link', href: '/api/v1/evidence/' + encodeURIComponent(r.file), download: r.file, text: t('download') + ' ' + r.file }), el('br'), 'SHA-256: ', el('code', { id: 'bundle-sha', text: r.sha256 })));
          e.target.disabled = false;
        }).catch(function (er) { e.target.disabled = false; flash(er.message); });
      } }));
      box.appendChild(ev);

      // Timeline: alerts, history, notes, actions.
      var rows = [];
      (inc.alerts || []).forEach(function (a) { rows.push([a.time, t('alert'), 'mamori', null, a]); });
      (inc.history || []).forEach(function (h) {
        var w = function (v) { return historyValue(h.action, v); };
        rows.push([h.at, tw('tl_', h.action), h.by, [h.from, h.to].filter(Boolean).map(w).join(' → ') + (h.why ? ' (' + h.why + ')' : '')]);
      });
      (inc.notes || []).forEach(function (n) { rows.push([n.at, t('notes'), n.by, n.text]); });
      actions.forEach(function (a) { rows.push([a.at, tw('tl_', a.kind), a.by, actionSummary(a.detail), null, a.detail]); });
      rows.sort(function (x, y) { return new Date(x[0]) - new Date(y[0]); });
      var note = el('textarea', { id: 'note-text', rows: 2, cols: 60 });
      box.appendChild(el('section', { class: 'card' }, el('h2', { text: t('timeline') }),
        el('table', { class: 'list', id: 'timeline' }, el('tbody', null, rows.map(function (r) {
          var detail = r[4]
            ? el('span', null, levelBadge(r[4].level), ' ', el('a', { href: '/alerts/' + Number(r[4].alert_id), text: alertTitle(r[4]) }), ' ', el('span', { class: 'muted', text: r[4].joined_because }))
            : el('span', { class: 'wrap', text: r[3] });
          if (r[5] !== undefined) {
            // The whole record (commands run, their output) stays one click away.
            detail = el('span', null, detail, el('details', { class: 'raw' }, el('summary', { text: t('raw_record') }), el('pre', { class: 'wrap mono', text: JSON.stringify(r[5], null, 2) })));
          }
          return el('tr', null, el('td', { class: 'nowrap', text: fmtTime(r[0]) }), el('td', { text: r[1] }), el('td', { text: r[2] }), el('td', null, detail));
        }))),
        CAN_CHANGE ? el('div', { class: 'actions' }, note, el('button', { id: 'add-note', text: t('add_note'), onclick: function () {
          if (!note.value.trim()) return;
          post('/api/v1/incidents/' + id + '/notes', { text: note.value }).then(function () { incidentDetail(id); }).catch(function (e) { flash(e.message); });
        } })) : null));
    }).catch(function (e) { flash(e.message); });
  }

  // ------------------------------------------------------------------------------------------
  // Search

  function search() {
    var form = document.getElementById('search-form');
    var q = document.getElementById('q');
    var range = document.getElementById('range');
    var tbody = document.querySelector('#results tbody');
    var detail = document.getElementById('event-detail');
    var params = new URLSearchParams(location.search);
    if (params.get('q')) q.value = params.get('q');
    if (params.has('range')) range.value = params.get('range');
    function addFilter(field, value) {
      var term = queryField(field) + ':"' + String(value).replace(/["\\]/g, '\\$&') + '"';
      q.value = q.value.trim() ? q.value.trim() + ' AND ' + term : term;
      run(true);
    }
    function run(push) {
      var p = new URLSearchParams();
      if (q.value.trim()) p.set('q', q.value.trim());
      var hours = range.value;
      var to = new Date();
      var from = hours ? new Date(to.getTime() - Number(hours) * 3600000) : null;
      if (from) p.set('from', from.toISOString());
      var exportQ = new URLSearchParams(p);
      exportQ.set('format', 'csv');
      document.getElementById('export-csv').setAttribute('href', '/api/v1/search/export?' + exportQ.toString());
      exportQ.set('format', 'jsonl');
      document.getElementById('export-jsonl').setAttribute('href', '/api/v1/search/export?' + exportQ.toString());
      if (push) history.replaceState(null, '', '/search?' + new URLSearchParams({ q: q.value.trim(), range: hours }).toString());
      var span = hours ? Number(hours) * 3600 : 7 * 86400;
      p.set('limit', '100');
      p.set('histogram', String(Math.max(60, Math.round(span / 60))));
      document.getElementById('flash').classList.add('hidden');
      api('/api/v1/search?' + p.toString()).catch(function (e) {
        // A failed search shows no stale results.
        clear(tbody);
        clear(document.getElementById('histogram'));
        document.getElementById('total').textContent = '';
        throw e;
      }).then(function (r) {
        document.getElementById('total').textContent = t('results') + ': ' + r.total;
        var hist = r.histogram || [];
        var hc = document.getElementById('histogram');
        if (hist.length) {
          var xs0 = hist.map(function (b) { return Math.floor(new Date(b.start).getTime() / 1000); });
          var width = Math.max(60, Math.round(span / 60));
          var lo = from ? Math.floor(from.getTime() / 1000) : xs0[0];
          var hi = from ? Math.floor(to.getTime() / 1000) : xs0[xs0.length - 1] + width;
          chart(hc, { height: 120, legend: { show: false }, scales: { x: { time: true, range: [lo, Math.max(hi, lo + width)] } }, series: [{}, { stroke: '#2563eb', fill: '#2563eb55', paths: uPlot.paths && uPlot.paths.bars ? uPlot.paths.bars({ size: [0.9, 28] }) : undefined }] },
            [xs0, hist.map(function (b) { return b.count; })]);
        } else clear(hc);
        clear(tbody);
        if (!r.hits.length) tbody.appendChild(el('tr', null, el('td', { colspan: 4, class: 'muted', text: t('no_results') })));
        r.hits.forEach(function (e) {
          tbody.appendChild(el('tr', { class: 'hit', onclick: function () {
            detail.classList.remove('hidden');
            clear(detail).appendChild(eventBox(e, addFilter));
          } },
            el('td', { class: 'nowrap', text: fmtTime(e.time || e.received_at) }),
            el('td', null, e.host ? el('a', { href: '#', class: 'fv', onclick: function (ev) { ev.preventDefault(); ev.stopPropagation(); addFilter('host.name', e.host); }, text: e.host }) : ''),
            el('td', { class: 'mono', text: e.source }),
            el('td', { class: 'mono wrap', text: e.raw })));
        });
      }).catch(function (e) { flash(e.message); });
    }
    form.addEventListener('submit', function (e) { e.preventDefault(); run(true); });
    range.addEventListener('change', function () { run(true); });
    function showSaved(list) {
      var box = clear(document.getElementById('saved'));
      if (!list.length) box.appendChild(el('span', { class: 'muted', text: t('none') }));
      list.forEach(function (x) {
        var qs = new URLSearchParams({ q: x.q, range: x.range_hours ? String(x.range_hours) : '' }).toString();
        box.appendChild(el('span', { class: 'chip saved-search' },
          el('a', { href: '/search?' + qs, text: x.name, title: x.q }),
          CAN_CHANGE ? el('button', { class: 'link', title: t('delete'), text: '×', onclick: function () {
            post('/api/v1/console/searches', { name: x.name, q: '' }).then(function (j) { showSaved(j.searches); }).catch(function (e) { flash(e.message); });
          } }) : null));
      });
    }
    api('/api/v1/console/searches').then(function (j) { showSaved(j.searches || []); }).catch(function () { /* optional */ });
    var saveBtn = document.getElementById('save-search');
    if (saveBtn) saveBtn.addEventListener('click', function () {
      var name = document.getElementById('save-name').value.trim();
      if (!name || !q.value.trim()) return;
      post('/api/v1/console/searches', { name: name, q: q.value.trim(), range_hours: range.value ? Number(range.value) : null })
        .then(function (j) { document.getElementById('save-name').value = ''; showSaved(j.searches); })
        .catch(function (e) { flash(e.message); });
    });
    run(false);
  }

  // ------------------------------------------------------------------------------------------
  // Rules

  function rules() {
    var tb = document.querySelector('#rules-table tbody');
    var testSel = document.getElementById('test-rule-id');
    function levelSelect(x) {
      var sel = el('select', { class: 'level-override', 'data-rule': x.id, disabled: !CAN_CHANGE },
        el('option', { value: 'default', text: t('level_default') }),
        LEVELS.map(function (l) { return el('option', { value: l, text: t('level_' + l) }); }));
      sel.value = x.level_override || 'default';
      sel.addEventListener('change', function () {
        post('/api/v1/console/rules/override', { rule_id: x.id, level: sel.value }).then(load).catch(function (e) { flash(e.message); });
      });
      return sel;
    }
    function load() {
      return api('/api/v1/console/rules').then(function (r) {
        var rep = r.report || {};
        var summary = t('loaded_rules') + ': ' + (rep.rules || 0) + ' + ' + (rep.correlations || 0) + ' (' + (rep.files || 0) + ' ' + t('files') + ') · ' + fmtTime(rep.loaded_at) + (rep.error ? ' · ' + t('error') + ': ' + rep.error : '');
        clear(document.getElementById('rules-report')).appendChild(el('p', { class: 'muted', text: summary }));
        var failed = rep.failures || [];
        var fb = clear(document.getElementById('rules-failed'));
        if (!failed.length) fb.appendChild(el('p', { class: 'muted', text: t('none') }));
        else fb.appendChild(el('ul', null, failed.map(function (f) { return el('li', { class: 'mono', text: typeof f === 'string' ? f : JSON.stringify(f) }); })));
        clear(tb);
        var list = (r.rules || []).slice().sort(function (a, b) { return (b.hits || 0) - (a.hits || 0) || String(alertTitle(a)).localeCompare(String(alertTitle(b))); });
        list.forEach(function (x) {
          tb.appendChild(el('tr', { class: 'rule-row' + (x.enabled ? '' : ' rule-off'), 'data-rule': x.id },
            el('td', { text: alertTitle(x) }), el('td', null, x.level ? levelBadge(x.level) : '—'), el('td', { class: 'mono wrap', text: x.id }),
            el('td', { class: 'num' }, x.hits ? el('a', { href: '/alerts?rule_id=' + encodeURIComponent(x.id), text: String(x.hits) }) : '0'),
            el('td', null, el('span', { class: 'state ' + (x.enabled ? 'state-ok' : 'state-silent'), text: x.enabled ? t('enabled') : t('disabled') }), ' ',
              CAN_CHANGE ? el('button', { class: 'rule-toggle', 'data-rule': x.id, text: x.enabled ? t('disable') : t('enable'), onclick: function () {
                post('/api/v1/console/rules/override', { rule_id: x.id, enabled: !x.enabled }).then(load).catch(function (e) { flash(e.message); });
              } }) : null),
            el('td', null, levelSelect(x))));
        });
        if (!testSel) return;
        var keep = testSel.value;
        while (testSel.options.length > 1) testSel.remove(1);
        list.filter(function (x) { return x.enabled && !x.correlation; }).forEach(function (x) {
          testSel.appendChild(el('option', { value: x.id, text: alertTitle(x) }));
        });
        testSel.value = keep;
      }).catch(function (e) { flash(e.message); });
    }
    var testForm = document.getElementById('rule-test-form');
    if (testForm) testForm.addEventListener('submit', function (e) {
      e.preventDefault();
      var b = { last: Number(document.getElementById('test-last').value) || 1000 };
      if (testSel.value) b.rule_id = testSel.value; else b.yaml = document.getElementById('test-yaml').value;
      var btn = document.getElementById('run-test');
      btn.disabled = true;
      var out = clear(document.querySelector('#test-results tbody'));
      document.getElementById('test-summary').textContent = '…';
      document.getElementById('flash').classList.add('hidden');
      post('/api/v1/console/rules/test', b).then(function (r) {
        btn.disabled = false;
        document.getElementById('test-summary').textContent = t('matched') + ': ' + r.matched + ' / ' + t('examined') + ': ' + r.examined + ' (' + r.elapsed_ms + ' ms)';
        document.getElementById('test-results').classList.remove('hidden');
        if (!r.events.length) out.appendChild(el('tr', null, el('td', { colspan: 4, class: 'muted', text: t('no_results') })));
        r.events.forEach(function (ev) {
          out.appendChild(el('tr', { class: 'test-hit' }, el('td', { class: 'nowrap', text: fmtTime(ev.time || ev.received_at) }), el('td', { text: ev.host || '' }),
            el('td', { class: 'mono', text: ev.source }), el('td', { class: 'mono wrap', text: ev.raw })));
        });
      }).catch(function (er) { btn.disabled = false; document.getElementById('test-summary').textContent = ''; flash(er.message); });
    });
    load();
  }

  // ------------------------------------------------------------------------------------------
  // Settings

  function settings() {
    contacts();
    identities();
    policy();
    tokens();
    var table = document.querySelector('#users-table tbody');
    if (!table) return;
    function load() {
      api('/api/v1/users').then(function (j) {
        clear(table);
        j.users.forEach(function (u) {
          table.appendChild(el('tr', null, el('td', { text: u.name }), el('td', { text: t('role_' + u.role) }),
            el('td', { text: u.disabled ? t('disabled') : (u.locked_until && new Date(u.locked_until) > new Date() ? t('locked') : t('enabled')) }),
            el('td', null, u.name === body.dataset.user ? null : el('button', { text: u.disabled ? t('enable') : t('disable'), onclick: function () {
              post('/api/v1/users/' + encodeURIComponent(u.name), { disabled: !u.disabled }).then(load).catch(function (e) { flash(e.message); });
            } }))));
        });
      }).catch(function (e) { flash(e.message); });
    }
    document.getElementById('add-user').addEventListener('submit', function (e) {
      e.preventDefault();
      var fd = new FormData(e.target);
      post('/api/v1/users', { name: fd.get('name'), role: fd.get('role'), password: fd.get('password') })
        .then(function () { e.target.reset(); load(); }).catch(function (er) { flash(er.message); });
    });
    load();
  }

  // Contacts, channels and escalation of [notify]; an admin sends a test to a contact.
  function contacts() {
    var box = document.getElementById('contacts');
    if (!box) return;
    api('/api/v1/console/contacts').then(function (j) {
      clear(box);
      if (!j.configured) { box.appendChild(el('p', { class: 'muted', id: 'contacts-na', text: t('notify_not_configured') })); return; }
      var tb = el('tbody');
      box.appendChild(el('table', { class: 'list', id: 'contacts-table' },
        el('thead', null, el('tr', null, [t('name'), t('email'), t('language'), t('channels'), t('min_severity'), t('tier'), ''].map(function (h) { return el('th', { text: h }); }))), tb));
      j.contacts.forEach(function (c) {
        var out = el('span', { class: 'test-result' });
        tb.appendChild(el('tr', { class: 'contact-row', 'data-contact': c.name },
          el('td', { text: c.name }), el('td', { class: 'wrap', text: c.email || '—' }), el('td', { text: t('contact_lang_' + c.language) }),
          el('td', { text: (c.channels || []).join(', ') }), el('td', null, levelBadge(c.min_severity)),
          el('td', { class: 'num', text: c.escalation_order }),
          el('td', null, ROLE === 'admin' ? el('button', { class: 'send-test', text: t('send_test'), onclick: function (e) {
            e.target.disabled = true;
            clear(out).appendChild(document.createTextNode('…'));
            post('/api/v1/console/contacts/' + encodeURIComponent(c.name) + '/test').then(function (r) {
              e.target.disabled = false;
              clear(out);
              r.deliveries.forEach(function (d) {
                out.appendChild(el('span', { class: 'state ' + (d.ok ? 'state-ok' : 'state-silent'), text: d.channel + ': ' + (d.ok ? t('test_sent') : (d.error || t('error'))) }));
                out.appendChild(document.createTextNode(' '));
              });
            }).catch(function (er) { e.target.disabled = false; clear(out); flash(er.message); });
          } }) : null, ' ', out)));
      });
      box.appendChild(el('h3', { text: t('channels') }));
      box.appendChild(el('ul', { id: 'channels' }, j.channels.map(function (c) { return el('li', null, el('span', { class: 'mono', text: c.name }), ' (' + c.kind + ')'); })));
      box.appendChild(el('h3', { text: t('escalation') }));
      if (!j.escalation.length) box.appendChild(el('p', { class: 'muted', text: t('none') }));
      else box.appendChild(el('ol', { id: 'escalation' }, j.escalation.map(function (x) { return el('li', { text: x.to + ' — ' + t('after_minutes') + ': ' + x.after_minutes }); })));
    }).catch(function (e) { flash(e.message); });
  }

  // The identity directory of the analytics, as CSV/JSON text (admins save it).
  function identities() {
    var box = document.getElementById('identities');
    if (!box) return;
    api('/api/v1/console/identities').then(function (j) {
      clear(box);
      var count = document.getElementById('identities-count');
      if (!j.configured) { count.textContent = ''; box.appendChild(el('p', { class: 'muted', id: 'identities-na', text: t('identities_not_configured') })); return; }
      count.textContent = j.error ? t('error') : j.identities + ' ' + t('identities_count');
      box.appendChild(el('p', { class: 'mono muted', text: j.path }));
      if (j.error) box.appendChild(el('p', { class: 'flash error', text: j.error }));
      var ta = el('textarea', { id: 'identities-text', rows: 8, cols: 80, spellcheck: 'false', disabled: ROLE !== 'admin', value: j.text });
      box.appendChild(el('label', { class: 'block' }, ta));
      if (ROLE === 'admin') box.appendChild(el('div', { class: 'actions' }, el('button', { id: 'identities-save', text: t('save'), onclick: function () {
        post('/api/v1/console/identities', { text: ta.value }).then(function () { identities(); flashOk(t('saved_ok')); }).catch(function (e) { flash(e.message); });
      } })));
    }).catch(function (e) { flash(e.message); });
  }

  // The response policy: modes per level, allow-list and TTLs (admins edit, others read).
  function policy() {
    var box = document.getElementById('policy');
    if (!box) return;
    var ACTS = ['block_ip', 'disable_account', 'isolate_host', 'webhook'];
    var MODES = ['off', 'suggest', 'automatic'];
    var admin = ROLE === 'admin';
    api('/api/v1/console/response-policy').then(function (j) {
      clear(box);
      document.getElementById('policy-source').textContent = j.configured ? (j.from_console ? t('from_console') : t('from_file')) : '';
      if (!j.configured) { box.appendChild(el('p', { class: 'muted', id: 'policy-na', text: t('response_not_configured') })); return; }
      var p = j.policy;
      var tb = el('tbody');
      var sels = {};
      LEVELS.forEach(function (l) {
        var m = (p.levels || {})[l] || {};
        sels[l] = {};
        tb.appendChild(el('tr', null, el('th', null, levelBadge(l)), ACTS.map(function (a) {
          var sel = el('select', { class: 'mode', 'data-level': l, 'data-action': a, disabled: !admin }, MODES.map(function (mo) { return el('option', { value: mo, text: t('mode_' + mo) }); }));
          sel.value = m[a] || 'off';
          sels[l][a] = sel;
          return el('td', null, sel);
        })));
      });
      box.appendChild(el('table', { class: 'list policy', id: 'policy-table' },
        el('thead', null, el('tr', null, el('th', { text: t('level') }), ACTS.map(function (a) { return el('th', { text: t('act_' + a) }); }))), tb));
      var allow = el('textarea', { id: 'policy-allow', rows: 4, cols: 36, disabled: !admin, value: (p.allow_list || []).join('\n') });
      var dttl = el('input', { id: 'policy-default-ttl', type: 'number', min: 1, value: p.default_ttl, disabled: !admin });
      var mttl = el('input', { id: 'policy-max-ttl', type: 'number', min: 1, value: p.max_ttl, disabled: !admin });
      box.appendChild(el('div', { class: 'policy-ttl' },
        el('label', { class: 'policy-allow' }, t('allow_list'), allow),
        el('label', null, t('default_ttl'), dttl),
        el('label', null, t('max_ttl'), mttl)));
      if (admin) box.appendChild(el('div', { class: 'actions' }, el('button', { id: 'policy-save', text: t('save'), onclick: function () {
        var np = JSON.parse(JSON.stringify(p));
        np.levels = np.levels || {};
        LEVELS.forEach(function (l) {
          var m = Object.assign({}, np.levels[l] || {});
          ACTS.forEach(function (a) { m[a] = sels[l][a].value; });
          var any = ACTS.some(function (a) { return m[a] !== 'off'; });
          if (any || np.levels[l]) np.levels[l] = m;
        });
        np.allow_list = allow.value.split('\n').map(function (x) { return x.trim(); }).filter(Boolean);
        np.default_ttl = Number(dttl.value);
        np.max_ttl = Number(mttl.value);
        post('/api/v1/console/response-policy', np).then(function () { policy(); flashOk(t('saved_ok')); }).catch(function (e) { flash(e.message); });
      } })));
    }).catch(function (e) { flash(e.message); });
  }

  function flashOk(msg) {
    var f = document.getElementById('flash');
    f.textContent = msg;
    f.classList.remove('hidden', 'error');
    f.classList.add('ok');
  }

  // API tokens (admin): create (the secret is shown once), list, revoke.
  function tokens() {
    var tb = document.querySelector('#tokens-table tbody');
    if (!tb) return;
    function load() {
      api('/api/v1/console/tokens').then(function (j) {
        clear(tb);
        if (!j.tokens.length) tb.appendChild(el('tr', null, el('td', { colspan: 3, class: 'muted', text: t('none') })));
        j.tokens.forEach(function (x) {
          tb.appendChild(el('tr', { class: 'token-row', 'data-token': x.name }, el('td', { class: 'mono', text: x.name }), el('td', { text: fmtTime(x.created_at) }),
            el('td', null, el('button', { class: 'revoke', text: t('revoke'), onclick: function () {
              post('/api/v1/console/tokens/' + encodeURIComponent(x.name) + '/revoke').then(load).catch(function (e) { flash(e.message); });
            } }))));
        });
      }).catch(function (e) { flash(e.message); });
    }
    document.getElementById('add-token').addEventListener('submit', function (e) {
      e.preventDefault();
      var name = document.getElementById('token-name').value.trim();
      post('/api/v1/console/tokens', { name: name }).then(function (r) {
        document.getElementById('new-token-value').textContent = r.token;
        document.getElementById('new-token').classList.remove('hidden');
        e.target.reset();
        load();
      }).catch(function (er) { flash(er.message); });
    });
    load();
  }

  var id = Number(body.dataset.id);
  ({
    overview: overview,
    alerts: alerts,
    alert: function () { alertDetail(id); },
    incidents: incidents,
    incident: function () { incidentDetail(id); },
    search: search,
    rules: rules,
    settings: settings
  }[page] || function () {})();
})();
