// The coordinator's page: the view arrives as server-sent events (the
// whole mesh each time it changes); actions carry the session's CSRF token.
(function () {
  'use strict';
  var csrf = '';
  var $ = function (id) { return document.getElementById(id); };

  // A string body goes as it is (a policy file's text), anything else as JSON.
  function api(method, path, body) {
    var text = typeof body === 'string';
    return fetch(path, {
      method: method, credentials: 'same-origin',
      headers: { 'Content-Type': text ? 'text/plain; charset=utf-8' : 'application/json', 'X-CSRF-Token': csrf },
      body: body === undefined || text ? body : JSON.stringify(body)
    }).then(function (r) {
      return r.json().then(function (j) {
        if (!r.ok) { throw new Error(j.error || r.statusText); }
        return j;
      });
    });
  }
  function fail(err) { $('error').hidden = false; $('error').textContent = String(err.message || err); }
  function status(text, cls) { $('status').textContent = text; $('status').className = cls; }

  // Names of what the reports say, as the page shows them.
  var kindText = { direct_udp: 'direct UDP', direct_tcp: 'direct TCP', relayed_udp: 'relayed UDP', relayed_tcp: 'relayed TCP' };
  var natText = {
    'none': 'no NAT', 'endpoint-independent': 'EIM NAT (cone)', 'address-dependent': 'ADM NAT',
    'address-and-port-dependent': 'APDM NAT (symmetric)', 'unknown': 'NAT unknown'
  };
  function pathText(p) {
    var t = kindText[p.kind] || p.kind;
    if (p.via) { t += ' via ' + p.via; }
    if (p.why) { t += ' (' + p.why.replace(/_/g, ' ') + ')'; }
    if (p.rtt_ms) { t += ' ' + p.rtt_ms.toFixed(1) + ' ms'; }
    return t;
  }
  function nat(n) { return n.nat ? (natText[n.nat.mapping] || n.nat.mapping) : 'NAT not reported'; }
  function filtering(n) {
    if (!n.nat || !n.nat.filtering) { return 'not measured'; }
    return n.nat.filtering === 'none' ? 'nothing filters' : n.nat.filtering;
  }

  // The topology: d3's force layout. Node objects live across views so
  // that the picture moves only as much as the mesh changed.
  var svg, force, edgeG, nodeG, known = {};
  function setupGraph() {
    svg = d3.select('#graph');
    edgeG = svg.append('g');
    nodeG = svg.append('g');
    force = d3.layout.force().charge(-500).linkDistance(150).gravity(0.06).on('tick', place);
  }
  // place moves the drawing to the layout's positions.
  function place() {
    edgeG.selectAll('line').attr('x1', function (d) { return d.source.x; }).attr('y1', function (d) { return d.source.y; })
      .attr('x2', function (d) { return d.target.x; }).attr('y2', function (d) { return d.target.y; });
    edgeG.selectAll('text').attr('x', function (d) { return (d.source.x + d.target.x) / 2; })
      .attr('y', function (d) { return (d.source.y + d.target.y) / 2 - 4; });
    nodeG.selectAll('g.node').attr('transform', function (d) { return 'translate(' + d.x + ',' + d.y + ')'; });
  }
  // Beyond bigMesh nodes, the layout runs to rest before the drawing
  // (moving thousands of SVG elements each frame would hold the page), and
  // edge labels show on hover only.
  var bigMesh = 100, shape = '';
  function drawGraph(view) {
    var el = $('graph');
    force.size([el.clientWidth, el.clientHeight]);
    var next = {};
    var nodes = view.nodes.map(function (n) {
      var o = known[n.name] || { name: n.name };
      o.n = n;
      next[n.name] = o;
      return o;
    });
    known = next;
    var links = view.paths.filter(function (p) { return known[p.a] && known[p.b]; })
      .map(function (p) { return { source: known[p.a], target: known[p.b], p: p }; });
    var labels = nodes.length <= bigMesh && links.length <= 80; // beyond, labels would hide the picture
    force.nodes(nodes).links(links);

    var e = edgeG.selectAll('g.edge').data(links, function (d) { return d.p.a + '|' + d.p.b; });
    var ee = e.enter().append('g').attr('class', 'edge');
    ee.append('line');
    ee.append('title');
    if (labels) { ee.append('text'); }
    e.exit().remove();
    // Only the edges whose path changed are touched: with thousands of
    // them, setting every one's attributes on each update held the page.
    e.each(function (d) {
      var text = pathText(d.p), sig = d.p.kind + '|' + text + '|' + labels;
      if (this.__sig === sig) { return; }
      this.__sig = sig;
      var g = d3.select(this).attr('data-pair', d.p.a + '|' + d.p.b).attr('data-kind', d.p.kind);
      g.select('line').attr('class', d.p.kind);
      g.select('title').text(d.p.a + ' – ' + d.p.b + ': ' + text);
      g.select('text').text(labels ? text : '');
    });

    var v = nodeG.selectAll('g.node').data(nodes, function (d) { return d.name; });
    var ve = v.enter().append('g').call(force.drag);
    ve.append('circle').attr('r', 9).on('click', function (d) { if (!d3.event.defaultPrevented) { location.hash = 'node=' + encodeURIComponent(d.name); } });
    ve.append('title');
    ve.append('text').attr('class', 'name').attr('x', 12).attr('y', 0);
    ve.append('text').attr('class', 'nat').attr('x', 12).attr('y', 13);
    v.exit().remove();
    v.each(function (d) {
      var sig = d.n.online + '|' + nat(d.n);
      if (this.__sig === sig) { return; }
      this.__sig = sig;
      var g = d3.select(this).attr('class', 'node' + (d.n.online ? '' : ' offline'))
        .attr('data-name', d.name).attr('data-online', d.n.online);
      g.select('text.name').text(d.name);
      g.select('text.nat').text(nat(d.n));
      g.select('title').text(d.name + ' (' + (d.n.online ? 'online' : 'offline') + ', ' + nat(d.n) + ')');
    });
    // The layout moves only when nodes or pairs came or went.
    var sig = nodes.map(function (d) { return d.name; }).join(' ') + '|' + links.map(function (d) { return d.p.a + '-' + d.p.b; }).join(' ');
    if (sig === shape) { return; }
    shape = sig;
    if (nodes.length <= bigMesh) {
      force.start();
      return;
    }
    force.on('tick', null).start();
    for (var i = 0; i < 300 && force.alpha() > 0.01; i++) { force.tick(); }
    force.stop().on('tick', place);
    place();
  }

  // The table of nodes, filtered by the text in #filter.
  var lastView = { nodes: [], paths: [] };
  function cell(tr, text, cls) {
    var td = tr.insertCell();
    td.textContent = text;
    if (cls) { td.className = cls; }
    return td;
  }
  // Rows are kept by node and rebuilt only when their text changed; the
  // filter hides rows rather than dropping them.
  var tableRows = {};
  function rowTexts(n, view, paths) {
    var sw = (view.software || {})[n.name] || {};
    return [n.name, (n.addresses || []).join('\n'), n.online ? 'online' : 'offline',
      n.last_seen ? new Date(n.last_seen).toLocaleString() : '', sw.version || '', sw.os || '', nat(n), filtering(n),
      n.nat ? n.nat.portalloc + (n.nat.port_step ? ' (step ' + n.nat.port_step + ')' : '') : '',
      (n.endpoints || []).map(function (e) { return e.addr + ' ' + e.kind; }).join('\n'),
      (n.tags || []).join(', '), (n.routes || []).join('\n'), paths.join('\n')];
  }
  var listCells = { 1: true, 9: true, 11: true, 12: true };
  function tableRow(name, texts) {
    var tr = document.createElement('tr');
    tr.dataset.name = name;
    var a = document.createElement('a');
    a.href = '#node=' + encodeURIComponent(name);
    a.textContent = name;
    tr.insertCell().appendChild(a);
    texts.slice(1).forEach(function (t, i) { cell(tr, t, listCells[i + 1] ? 'list' : ''); });
    var b = document.createElement('button');
    b.textContent = 'Remove';
    b.className = 'remove';
    b.onclick = function () {
      if (confirm('Remove ' + name + ' from the mesh? Its key is banned until allowed back.')) {
        api('POST', '/api/nodes/' + encodeURIComponent(name) + '/remove').catch(fail);
      }
    };
    tr.insertCell().appendChild(b);
    return tr;
  }
  function drawTable(view) {
    var body = $('nodes').tBodies[0];
    var q = $('filter').value.trim().toLowerCase();
    var byNode = {};
    view.paths.forEach(function (p) {
      (byNode[p.a] = byNode[p.a] || []).push(p.b + ': ' + pathText(p));
      (byNode[p.b] = byNode[p.b] || []).push(p.a + ': ' + pathText(p));
    });
    var next = {}, order = [];
    view.nodes.forEach(function (n) {
      var texts = rowTexts(n, view, byNode[n.name] || []);
      var sig = texts.join('\u0001');
      var r = tableRows[n.name];
      if (!r || r.sig !== sig) {
        var old = r;
        r = { sig: sig, text: sig.toLowerCase(), tr: tableRow(n.name, texts) };
        if (old && old.tr.parentNode === body) { body.replaceChild(r.tr, old.tr); }
      }
      next[n.name] = r;
      r.tr.hidden = q !== '' && r.text.indexOf(q) < 0;
      order.push(r.tr);
    });
    Object.keys(tableRows).forEach(function (name) {
      if (!next[name] && tableRows[name].tr.parentNode === body) { body.removeChild(tableRows[name].tr); }
    });
    tableRows = next;
    // The rows in the view's order, moving only those out of place.
    var at = body.firstChild;
    order.forEach(function (tr) {
      if (tr === at) { at = at.nextSibling; } else { body.insertBefore(tr, at); }
    });
    while (at) { var after = at.nextSibling; body.removeChild(at); at = after; }
  }

  // The page of one node (#node=NAME): its paths, their recent changes and
  // its routes, which the administrator approves or rejects here.
  function panelNode() {
    var m = /^#node=(.+)$/.exec(location.hash);
    return m ? decodeURIComponent(m[1]) : '';
  }
  function rows(id, list, fields) {
    var body = $(id).tBodies[0];
    body.textContent = '';
    list.forEach(function (x) {
      var tr = body.insertRow();
      fields(x).forEach(function (f) { if (f instanceof Node) { tr.insertCell().appendChild(f); } else { cell(tr, f); } });
    });
  }
  function button(text, onclick) {
    var b = document.createElement('button');
    b.textContent = text;
    b.onclick = onclick;
    return b;
  }
  function drawPanel(view) {
    var name = panelNode();
    var n = view.nodes.filter(function (x) { return x.name === name; })[0];
    $('nodepanel').hidden = !n;
    if (!n) { return; }
    $('np-name').textContent = name;
    $('np-info').textContent = (n.online ? 'online' : 'offline, last seen ' + new Date(n.last_seen).toLocaleString()) +
      ' · ' + (n.addresses || []).join(', ') + ' · ' + nat(n) + ', filtering ' + filtering(n) + ' · key ' + n.public_key;
    rows('np-paths', view.paths.filter(function (p) { return p.a === name || p.b === name; }), function (p) {
      return [p.a === name ? p.b : p.a, kindText[p.kind] || p.kind, p.via || '', (p.why || '').replace(/_/g, ' '),
        p.rtt_ms ? p.rtt_ms.toFixed(1) + ' ms' : '', new Date(p.reported).toLocaleTimeString()];
    });
    rows('np-changes', (view.changes || []).filter(function (c) { return c.node === name || c.peer === name; }).reverse(), function (c) {
      return [new Date(c.at).toLocaleString(), c.node, c.peer, kindText[c.was] || c.was, kindText[c.now] || c.now];
    });
  }
  function loadRoutes() {
    var name = panelNode();
    if (!name) { return; }
    api('GET', '/api/routes').then(function (list) {
      var set = function (what, prefix) {
        var body = {};
        body[what] = [prefix];
        return function () { api('POST', '/api/nodes/' + encodeURIComponent(name) + '/routes', body).then(loadRoutes).catch(fail); };
      };
      rows('np-routes', list.filter(function (r) { return r.node === name; }), function (r) {
        return [r.prefix, r.advertised ? 'yes' : 'no', r.approved ? 'yes' : 'no', r.primary ? 'yes' : 'no',
          r.approved ? button('Reject', set('reject', r.prefix)) : button('Approve', set('approve', r.prefix))];
      });
    }).catch(fail);
  }

  function loadTokens() {
    return api('GET', '/api/tokens').then(function (list) {
      var body = $('tokens').tBodies[0];
      body.textContent = '';
      list.forEach(function (t) {
        var tr = body.insertRow();
        tr.dataset.id = t.id;
        [t.id, new Date(t.created).toLocaleString(), new Date(t.expires).toLocaleString(), t.reusable ? 'yes' : 'no',
          String(t.uses), t.revoked ? 'yes' : 'no', (t.tags || []).join(', ')].forEach(function (s) { cell(tr, s); });
        var b = document.createElement('button');
        b.textContent = 'Revoke';
        b.disabled = t.revoked;
        b.onclick = function () { api('POST', '/api/tokens/' + encodeURIComponent(t.id) + '/revoke').then(loadTokens).catch(fail); };
        tr.insertCell().appendChild(b);
      });
    }).catch(fail);
  }

  // The access policy: the version in force, and a check or set of a new
  // one, listing every error by line:col and every warning as
  // 'meshnode policy check' does.
  var policyInForce = null;
  // showPolicy shows version (the one in force for 0).
  function showPolicy(version) {
    return api('GET', '/api/policy' + (version ? '?version=' + version : '')).then(function (p) {
      if (!version) { policyInForce = p; }
      var info = $('pol-info');
      $('pol-text').hidden = !(p && p.text);
      if (!p) { info.textContent = 'No access policy was ever set: every node reaches every other.'; return; }
      var when = new Date(p.created).toLocaleString();
      var which = version ? 'Older version ' : 'In force: version ';
      info.textContent = which + p.version + (p.text ? ', set ' + when + ':' : ', ' + when + ': removed; every node reaches every other.');
      info.dataset.version = p.version;
      $('pol-text').textContent = p.text;
    });
  }
  function loadPolicy() { return showPolicy(0).catch(fail); }
  function policyResult(lines) {
    var ul = $('pol-result');
    ul.textContent = '';
    lines.forEach(function (l) { var li = document.createElement('li'); li.className = l[0]; li.textContent = l[1]; ul.appendChild(li); });
  }
  function warnings(list) { return (list || []).map(function (w) { return ['warning', 'warning: ' + w]; }); }
  function setupPolicy() {
    var f = $('policy');
    $('pol-edit').onclick = function () { f.text.value = policyInForce && policyInForce.text ? policyInForce.text : ''; };
    $('pol-check').onclick = function () {
      api('POST', '/api/policy/check', f.text.value).then(function (c) {
        var head = c.valid ? [['ok', 'valid, ' + c.rules + ' rules']] : [];
        policyResult(head.concat((c.errors || []).map(function (e) { return ['error', e]; }), warnings(c.warnings)));
      }).catch(function (err) { policyResult([['error', String(err.message || err)]]); });
    };
    f.onsubmit = function (ev) {
      ev.preventDefault();
      api('POST', '/api/policy', f.text.value).then(function (p) {
        policyResult([['ok', 'Access policy version ' + p.version + ' set: the coordinator has sent every node its filter and peer map.']].concat(warnings(p.warnings)));
        return loadPolicy();
      }).catch(function (err) { policyResult(String(err.message || err).split('\n').map(function (l) { return ['error', l]; })); });
    };
    // As 'meshnode policy clear': a version of its own; the older ones stay.
    $('pol-clear').onclick = function () {
      if (!window.confirm('Remove the access policy? Every node will reach every other.')) { return; }
      api('POST', '/api/policy/clear').then(function (p) {
        policyResult([['ok', 'Access policy removed (version ' + p.version + '): every node reaches every other.']]);
        return loadPolicy();
      }).catch(function (err) { policyResult([['error', String(err.message || err)]]); });
    };
    $('polver').onsubmit = function (ev) {
      ev.preventDefault();
      showPolicy(ev.target.version.value.trim()).catch(function (err) { policyResult([['error', String(err.message || err)]]); });
    };
    $('pol-current').onclick = loadPolicy;
    // As 'meshnode policy test SRC DST[:PORT][/PROTO]', against the policy
    // in force, or with --file against the draft in the text box.
    $('poltest').onsubmit = function (ev) {
      ev.preventDefault();
      var src = ev.target.src.value.trim(), dst = ev.target.dst.value.trim();
      var asked = ev.target.draft.checked ? api('POST', '/api/policy/test', { text: f.text.value, src: src, dst: dst })
        : api('GET', '/api/policy/test?' + new URLSearchParams({ src: src, dst: dst }));
      asked.then(function (r) { $('pol-answer').textContent = r.answer; })
        .catch(function (err) { $('pol-answer').textContent = String(err.message || err); });
    };
    loadPolicy();
  }

  function start() {
    $('main').hidden = false;
    $('logout').hidden = false;
    setupGraph();
    var es = new EventSource('/api/events');
    es.addEventListener('view', function (ev) {
      lastView = JSON.parse(ev.data);
      status('live: ' + lastView.nodes.length + ' nodes, ' + lastView.paths.length + ' paths', 'live');
      drawGraph(lastView);
      drawTable(lastView);
      drawPanel(lastView);
    });
    window.onhashchange = function () { drawPanel(lastView); loadRoutes(); };
    $('np-close').onclick = function () { location.hash = ''; };
    es.onerror = function () { status('disconnected; retrying…', 'down'); };
    $('filter').oninput = function () { drawTable(lastView); };
    $('logout').onclick = function () { api('POST', '/api/logout').then(function () { es.close(); location.reload(); }).catch(fail); };
    $('newtoken').onsubmit = function (ev) {
      ev.preventDefault();
      var f = ev.target;
      var tags = f.tags.value.split(/[\s,]+/).filter(function (s) { return s !== ''; });
      api('POST', '/api/tokens', { reusable: f.reusable.checked, expiry: f.expiry.value.trim(), tags: tags }).then(function (r) {
        $('tokenout').hidden = false;
        $('newtokentext').textContent = r.token;
        return loadTokens();
      }).catch(fail);
    };
    loadTokens();
    setupPolicy();
  }

  fetch('/api/session', { credentials: 'same-origin' }).then(function (r) {
    if (r.status === 401) { $('login').hidden = false; status('not logged in', 'down'); return; }
    return r.json().then(function (j) { csrf = j.csrf; start(); });
  }).catch(fail);
}());
