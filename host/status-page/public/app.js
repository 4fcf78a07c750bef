// tether's status page: plain JavaScript, no build step. It opens the daemon's event stream
// (server-sent events at ./events), draws the snapshot it gets on every (re)connect, then
// applies the updates. Relative URLs only, so it works behind a reverse proxy under a path.
'use strict';

(() => {
  const $ = (sel, root = document) => root.querySelector(sel);

  /** What the page knows; `stream` is also exposed as window.tetherStatus (tests read it). */
  const page = {
    instance: null,
    gateway: null,
    historyMs: 600_000,
    heartbeatMs: 15_000,
    devices: new Map(),
    stream: { opens: 0, errors: 0, snapshots: 0, restarts: 0, heartbeats: 0, updates: 0, lastMessageAt: null, connectedSince: null, state: 'connecting' },
  };
  window.tetherStatus = page.stream;

  // ---- the stream -------------------------------------------------------------------------

  let source = null;
  let retryTimer = null;
  let retryMs = 1000;

  function connect() {
    clearTimeout(retryTimer);
    retryTimer = null;
    if (source) source.close();
    const es = new EventSource('events');
    source = es;
    es.onopen = () => {
      page.stream.opens++;
      page.stream.connectedSince = Date.now();
      page.stream.lastMessageAt = Date.now();
      retryMs = 1000;
      setStream('live');
    };
    es.onerror = () => {
      page.stream.errors++;
      setStream('reconnecting');
      // The browser retries a dropped stream by itself, but gives up for good on an HTTP error
      // (a proxy's 502 while the daemon restarts): then the page starts over, with backoff.
      if (es.readyState === EventSource.CLOSED) retryLater();
    };
    es.addEventListener('snapshot', (e) => {
      touch();
      onSnapshot(JSON.parse(e.data));
    });
    es.addEventListener('update', (e) => {
      touch();
      page.stream.updates++;
      onUpdate(JSON.parse(e.data));
    });
    es.addEventListener('heartbeat', () => {
      touch();
      page.stream.heartbeats++;
    });
  }

  function retryLater() {
    if (retryTimer) return;
    if (source) source.close();
    source = null;
    const wait = Math.round(retryMs * (0.5 + Math.random() / 2));
    retryMs = Math.min(retryMs * 2, 10_000);
    retryTimer = setTimeout(connect, wait);
  }

  function touch() {
    page.stream.lastMessageAt = Date.now();
    if (page.stream.state !== 'live') setStream('live');
  }

  // A stream that says nothing for two heartbeats is dead even if the connection looks open
  // (a half-open connection through a proxy): start over.
  setInterval(() => {
    const s = page.stream;
    if (s.state === 'live' && s.lastMessageAt !== null && Date.now() - s.lastMessageAt > 2 * page.heartbeatMs + 2000) {
      setStream('reconnecting');
      retryLater();
    }
    renderClock();
  }, 1000);

  function setStream(state) {
    page.stream.state = state;
    document.body.dataset.stream = state;
    renderStream();
  }

  // ---- the model --------------------------------------------------------------------------

  function onSnapshot(snap) {
    page.stream.snapshots++;
    const restarted = page.instance !== null && page.instance !== snap.instance;
    if (restarted) page.stream.restarts++;
    page.instance = snap.instance;
    page.gateway = snap.gateway;
    page.historyMs = snap.historyMs;
    page.heartbeatMs = snap.heartbeatMs;
    const seen = new Set();
    for (const d of snap.devices) {
      seen.add(d.id);
      const old = page.devices.get(d.id);
      const dev = old ?? createDevice(d);
      page.devices.set(d.id, dev);
      dev.info = d;
      dev.facts = d.facts;
      dev.rttStats = d.rttStats;
      dev.lastSeen = d.lastSeen;
      if (restarted && old) {
        // A new daemon knows only its own history: keep what this page saw of the old one.
        const firstNew = (list) => (list.length ? list[0].at : Infinity);
        const keep = (list, before) => list.filter((x) => x.at < before && !x.marker);
        const oldChanges = keep(old.changes, firstNew(d.changes));
        dev.changes = [...oldChanges, { at: snap.gateway.startedAt, marker: true, cause: 'daemon restarted' }, ...d.changes];
        dev.rebootLog = [...keep(old.rebootLog, firstNew(d.rebootLog)), ...d.rebootLog];
        const firstRtt = d.rtt.length ? d.rtt[0][0] : Infinity;
        dev.rtt = [...old.rtt.filter(([t]) => t < firstRtt), ...d.rtt];
      } else {
        dev.changes = d.changes;
        dev.rebootLog = d.rebootLog;
        dev.rtt = d.rtt;
      }
      trimRtt(dev);
      renderDevice(dev);
    }
    for (const [id, dev] of page.devices) {
      if (!seen.has(id)) {
        dev.el.remove();
        page.devices.delete(id);
      }
    }
    const notice = $('#notice');
    if (restarted) {
      notice.textContent = `The daemon restarted at ${clock(snap.gateway.startedAt)}; the page reconnected by itself (history before that is what this page saw).`;
      notice.hidden = false;
    }
    renderGateway();
  }

  function onUpdate(u) {
    if (u.type === 'gateway') {
      if (page.gateway) Object.assign(page.gateway, { brokerConnected: u.brokerConnected, brokerUrl: u.brokerUrl });
      renderGateway();
      return;
    }
    const dev = page.devices.get(u.device);
    if (!dev) return;
    switch (u.type) {
      case 'state':
        dev.changes.push(u.change);
        trimList(dev.changes);
        dev.facts = u.facts;
        break;
      case 'reboot':
        dev.rebootLog.push(u.reboot);
        trimList(dev.rebootLog);
        dev.facts = u.facts;
        break;
      case 'facts':
        dev.facts = u.facts;
        break;
      case 'seen':
        dev.lastSeen = u.lastSeen;
        return;
      case 'rtt': {
        const last = dev.rtt.length ? dev.rtt[dev.rtt.length - 1][0] : -Infinity;
        for (const s of u.samples) if (s[0] > last) dev.rtt.push(s);
        trimRtt(dev);
        dev.rttStats = u.stats;
        dev.lastSeen = u.lastSeen;
        renderChart(dev);
        renderFacts(dev);
        return;
      }
    }
    renderDevice(dev);
  }

  function trimList(list) {
    if (list.length > 200) list.splice(0, list.length - 200);
  }

  function trimRtt(dev) {
    const horizon = Date.now() - page.historyMs;
    let drop = 0;
    while (drop < dev.rtt.length && dev.rtt[drop][0] < horizon) drop++;
    if (drop) dev.rtt.splice(0, drop);
  }

  // ---- drawing ----------------------------------------------------------------------------

  function createDevice(d) {
    const el = $('#device-template').content.firstElementChild.cloneNode(true);
    el.dataset.device = d.id;
    $('#devices').append(el);
    return { id: d.id, el, chart: null, info: d, facts: d.facts, rtt: [], changes: [], rebootLog: [], rttStats: d.rttStats, lastSeen: d.lastSeen };
  }

  function renderDevice(dev) {
    const { el, info } = dev;
    $('.device-name', el).textContent = info.name;
    $('.device-id', el).textContent = info.name === info.id ? '' : info.id;
    $('.history', el).textContent = duration(page.historyMs);
    const state = $('.state', el);
    state.textContent = dev.facts.state;
    state.dataset.state = dev.facts.state;
    el.dataset.state = dev.facts.state;
    renderFacts(dev);
    renderLogs(dev);
    renderChart(dev);
    renderSince(dev);
  }

  function renderSince(dev) {
    const f = dev.facts;
    $('.since', dev.el).textContent =
      f.since === null ? `${f.state} since before the daemon started · lost within ${duration(dev.info.boundMs)} of silence` : `${f.state} since ${clock(f.since)} (${ago(f.since)}) · ${f.cause} · lost within ${duration(dev.info.boundMs)} of silence`;
  }

  function renderFacts(dev) {
    const f = dev.facts;
    const el = dev.el;
    const r = dev.rttStats;
    $('.f-rtt', el).textContent = r.last === null ? '–' : `${ms(r.last)} / ${ms(r.p50)} / ${ms(r.p99)}`;
    $('.f-seen', el).textContent = dev.lastSeen === null ? 'never' : ago(dev.lastSeen);
    const reboots = Object.entries(f.reboots).filter(([, n]) => n > 0);
    $('.f-reboots', el).textContent = reboots.length ? reboots.map(([c, n]) => `${c} ×${n}`).join(', ') : 'none';
    $('.f-asleep', el).textContent = duration(f.asleepMs);
    $('.f-leases', el).textContent = f.leases.length ? f.leases.map((l) => (l.count > 1 ? `${l.name} ×${l.count}` : l.name)).join(', ') : 'none';
    $('.f-outbox', el).textContent = `${f.outbox.size} message${f.outbox.size === 1 ? '' : 's'}${f.outbox.size ? ` (${bytes(f.outbox.bytes)})` : ''}`;
    const mqtt = $('.f-mqtt', el);
    mqtt.textContent = f.brokerConnected ? 'connected' : 'not connected';
    mqtt.className = `f-mqtt ${f.brokerConnected ? 'good' : 'bad'}`;
    $('.f-queue', el).textContent = String(f.writeQueue);
    $('.f-lost', el).textContent = String(f.lostCount);
    $('.f-port', el).textContent = `${dev.info.port} (${dev.info.board}${f.protocol !== 'tether' ? `, ${f.protocol}` : ''}${f.bootId !== null ? `, boot ${f.bootId}` : ''})`;
  }

  function renderLogs(dev) {
    const changes = $('.changes', dev.el);
    changes.replaceChildren(
      ...dev.changes
        .slice(-12)
        .reverse()
        .map((c) => {
          const li = document.createElement('li');
          const t = span('time', clock(c.at));
          if (c.marker) {
            li.className = 'marker';
            li.append(t, span('cause', c.cause));
          } else {
            const to = span('to', c.to);
            to.dataset.state = c.to;
            li.append(t, span('from', c.from), ' → ', to, span('cause', c.cause));
          }
          return li;
        }),
    );
    if (!dev.changes.length) changes.replaceChildren(emptyItem('none seen by this daemon yet'));
    const reboots = $('.reboot-log', dev.el);
    reboots.replaceChildren(
      ...dev.rebootLog
        .slice(-8)
        .reverse()
        .map((r) => {
          const li = document.createElement('li');
          li.append(span('time', clock(r.at)), span('cause', r.causes.join(', ') || 'unknown'), span('survived', r.stateSurvived ? 'state kept' : 'state lost, replayed'));
          return li;
        }),
    );
    if (!dev.rebootLog.length) reboots.replaceChildren(emptyItem('none'));
  }

  function renderChart(dev) {
    const box = $('.chart', dev.el);
    const data = chartData(dev);
    const width = Math.max(200, box.clientWidth || 600);
    if (!window.uPlot) return; // the chart library did not load: the facts still show
    if (!dev.chart) {
      dev.chart = new window.uPlot(
        {
          width,
          height: 130,
          legend: { show: false },
          cursor: { drag: { x: false, y: false } },
          scales: { x: { time: true }, y: { range: (u, min, max) => [0, Math.max(5, max * 1.2)] } },
          axes: [{ stroke: '#888', grid: { stroke: 'rgba(128,128,128,.15)' } }, { stroke: '#888', size: 44, grid: { stroke: 'rgba(128,128,128,.15)' } }],
          series: [{}, { label: 'RTT ms', stroke: '#2e9e5b', fill: 'rgba(46,158,91,.12)', width: 1.5, points: { show: false }, spanGaps: false }],
        },
        data,
        box,
      );
    } else {
      dev.chart.setData(data);
    }
  }

  /**
   * [xs (s), ys (ms)] with a gap wherever the board was not ready between two samples (lost,
   * asleep, a daemon restart). Not by the samples' spacing: a board that sends BEATs has its
   * round trip measured only at each renewal (every 30 intervals), ready all along.
   */
  function chartData(dev) {
    const xs = [];
    const ys = [];
    let prev = null;
    for (const [t, v] of dev.rtt) {
      if (prev !== null && notReadyBetween(dev, prev, t)) {
        xs.push((prev + 1) / 1000);
        ys.push(null);
      }
      xs.push(t / 1000);
      ys.push(v);
      prev = t;
    }
    return [xs, ys];
  }

  function notReadyBetween(dev, from, to) {
    return dev.changes.some((c) => c.at > from && c.at <= to && (c.marker || c.to !== 'ready'));
  }

  window.addEventListener('resize', () => {
    for (const dev of page.devices.values()) {
      if (dev.chart) dev.chart.setSize({ width: Math.max(200, $('.chart', dev.el).clientWidth), height: 130 });
    }
  });

  function renderGateway() {
    const g = page.gateway;
    if (!g) return;
    $('#gateway-name').textContent = g.name;
    document.title = `tether · ${g.name}`;
    const broker = $('#broker');
    broker.textContent = g.brokerConnected ? 'broker: connected' : 'broker: not connected';
    broker.dataset.good = String(g.brokerConnected);
    // With broker.urls, the node the gateway is on now (not the first one listed).
    broker.title = `The gateway's own MQTT session: ${g.brokerUrl}`;
    $('#footer-gateway').textContent = `gateway ${g.id}, broker ${g.brokerUrl}, daemon started ${clock(g.startedAt)}`;
  }

  function renderStream() {
    const s = page.stream;
    const pill = $('#stream');
    pill.dataset.state = s.state;
    pill.textContent = s.state === 'live' ? 'live' : s.state === 'reconnecting' ? 'reconnecting…' : 'connecting…';
  }

  function renderClock() {
    for (const dev of page.devices.values()) {
      renderSince(dev);
      $('.f-seen', dev.el).textContent = dev.lastSeen === null ? 'never' : ago(dev.lastSeen);
    }
    const s = page.stream;
    $('#footer-stream').textContent =
      s.state === 'live' ? `live since ${clock(s.connectedSince)}, last message ${ago(s.lastMessageAt)}` : `stream ${s.state}${s.lastMessageAt ? `, last message ${ago(s.lastMessageAt)}` : ''}`;
  }

  // ---- formatting -------------------------------------------------------------------------

  function span(cls, text) {
    const s = document.createElement('span');
    s.className = cls;
    s.textContent = text;
    return s;
  }

  function emptyItem(text) {
    const li = document.createElement('li');
    li.className = 'empty';
    li.textContent = text;
    return li;
  }

  function clock(t) {
    return new Date(t).toLocaleTimeString([], { hour12: false });
  }

  function ago(t) {
    return `${duration(Math.max(0, Date.now() - t))} ago`;
  }

  function duration(ms) {
    if (ms < 1000) return `${Math.round(ms)} ms`;
    const s = ms / 1000;
    if (s < 60) return `${s < 10 ? s.toFixed(1) : Math.round(s)} s`;
    if (s < 3600) return Math.round(s % 60) ? `${Math.floor(s / 60)} min ${Math.round(s % 60)} s` : `${Math.floor(s / 60)} min`;
    return Math.round((s % 3600) / 60) ? `${Math.floor(s / 3600)} h ${Math.round((s % 3600) / 60)} min` : `${Math.floor(s / 3600)} h`;
  }

  function ms(v) {
    return v === null ? '–' : `${v < 10 ? v.toFixed(1) : Math.round(v)} ms`;
  }

  function bytes(n) {
    return n < 1024 ? `${n} B` : n < 1024 * 1024 ? `${(n / 1024).toFixed(1)} KiB` : `${(n / 1024 / 1024).toFixed(1)} MiB`;
  }

  connect();
})();
