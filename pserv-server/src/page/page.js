// pserv's status page: reads the control API and follows /v1/events. Every text that comes
// from the network (hostnames, log lines, file names) is set as text, never as markup.
"use strict";
(() => {
  const $ = (id) => document.getElementById(id);
  const TOKEN_KEY = "pserv-token";
  let token = sessionStorage.getItem(TOKEN_KEY);

  // ---- the API, with the token as a header (never in a URL) ----
  class NeedToken extends Error {}
  const headers = (extra) => Object.assign(token ? { Authorization: "Bearer " + token } : {}, extra || {});
  async function api(path, also) {
    const r = await fetch(path, { headers: headers(), cache: "no-store" });
    if (r.status === 401) throw new NeedToken();
    // `also`: another status whose body is an answer (the status's 503 before a snapshot).
    if (!r.ok && r.status !== also) throw new Error(path + ": HTTP " + r.status);
    const body = await r.json();
    if (connState === "error") setConn(stats.connected ? "live" : "connecting", stats.connected ? "live" : "connecting…");
    return body;
  }

  // ---- boot stages, built from events ----
  const STAGES = ["", "DHCP", "loader", "config", "kernel/initrd", "installer"];
  const machines = new Map(); // mac -> {stage, detail, log, node, ip, failed}
  const ipToMac = new Map();
  const nodeToMac = new Map();
  const visible = new Map(); // mac -> row elements of the page shown
  const dirty = new Set();

  // Machines followed at once, and addresses remembered; past these the oldest are forgotten
  // (a tab left open for weeks).
  const MAX_MACHINES = 200000;
  function machine(mac) {
    let m = machines.get(mac);
    if (!m) {
      if (machines.size >= MAX_MACHINES) {
        const [oldMac, old] = machines.entries().next().value;
        machines.delete(oldMac);
        counts[old.stage]--;
        if (old.failed) failedCount--;
      }
      m = { stage: 0, detail: "", log: "", node: null, ip: null, failed: false };
      machines.set(mac, m);
      counts[0]++;
    }
    return m;
  }
  function learn(mac, ip, node) {
    if (!mac) return;
    if (ipToMac.size >= MAX_MACHINES) ipToMac.delete(ipToMac.keys().next().value);
    if (nodeToMac.size >= MAX_MACHINES) nodeToMac.delete(nodeToMac.keys().next().value);
    if (ip) ipToMac.set(ip, mac);
    if (node) nodeToMac.set(node, mac);
    const m = machine(mac);
    if (ip) m.ip = ip;
    if (node) m.node = node;
  }
  // "10.0.0.5:1234" or "[fe80::1]:1234" (a socket address) or a bare address: the address.
  function hostOf(a) {
    if (!a) return "";
    if (a.startsWith("[")) return a.slice(1, a.indexOf("]"));
    const i = a.lastIndexOf(":");
    return i > 0 && a.indexOf(":") === i ? a.slice(0, i) : a;
  }
  // Machines at each stage, and with an error, kept as they change (not counted per frame).
  const counts = [0, 0, 0, 0, 0, 0];
  let failedCount = 0;
  function advance(mac, stage, detail, failed) {
    if (!mac) return;
    const m = machine(mac);
    counts[m.stage]--;
    counts[stage]++;
    failedCount += (failed ? 1 : 0) - (m.failed ? 1 : 0);
    m.stage = stage;
    m.detail = detail;
    m.failed = !!failed;
    dirty.add(mac);
  }
  // A loader configuration's name (its `boot_config` event marks the step): iPXE's
  // ipxe/<mac>, GRUB's grub.cfg anywhere or grub/grub.cfg-01-<mac>, pxelinux.cfg/...
  const CONFIG_PATH = /(^|\/)(ipxe\/[0-9a-f]{2}(-[0-9a-f]{2}){5}$|grub\.cfg|pxelinux\.cfg\/)/i;
  const fileName = (p) => (p || "").split("?")[0].split("/").filter(Boolean).pop() || p;

  // What one event does to a machine's progress, and its line in the list.
  function apply(kind, e) {
    switch (kind) {
      case "dhcp": {
        learn(e.mac, e.ip, e.node);
        const m = machine(e.mac);
        if (e.client === "ipxe" && (m.stage === 1 || m.stage === 2)) {
          // iPXE's own DHCP, after the firmware loaded it: still loading.
          advance(e.mac, 2, "iPXE got " + e.ip);
        } else if (m.stage === 0 || m.stage >= 2) {
          advance(e.mac, 1, "got " + e.ip + ", boot file " + fileName(e.file));
        }
        return [e.node || e.mac, "ACK " + e.ip + " to " + e.client + ", boot file " + e.file];
      }
      case "bound": {
        // An address for any client (a laptop too): not a boot step by itself; a netbooting
        // machine's ACK is a `dhcp` event.
        if (ipToMac.has(e.ip) || machines.has(e.mac)) learn(e.mac, e.ip, null);
        else ipToMac.set(e.ip, e.mac);
        return [e.hostname || e.mac, "bound " + e.ip + " to " + e.mac];
      }
      case "released": case "declined": case "expired":
        return [e.mac || "", kind + " " + e.ip];
      case "quarantine_ended":
        return ["", e.ip + " left quarantine"];
      case "proxy": {
        learn(e.mac, null, e.node);
        const m = machine(e.mac);
        if (m.stage === 0 || m.stage >= 3) advance(e.mac, 1, "proxy " + e.answer + ", boot file " + fileName(e.file));
        return [e.node || e.mac, "proxy " + e.answer + ": boot file " + e.file];
      }
      case "boot_config":
        learn(e.mac, e.client, e.node);
        advance(e.mac, 3, e.loader + " config over " + e.via + (e.mode ? " (" + e.mode + ")" : ""));
        return [e.node || e.mac, e.loader + " config, " + e.mode + (e.profile ? " " + e.profile : "") + ", over " + e.via];
      case "tftp": case "http": {
        const ip = hostOf(e.client);
        const path = kind === "tftp" ? e.file : e.path;
        const ok = kind === "tftp" ? e.outcome === "completed" : e.status < 400;
        const mac = ipToMac.get(ip);
        // Node files and progress have their own events; a loader config its own.
        if (mac && !/^\/?nodes\//.test(path) && !CONFIG_PATH.test(path)) {
          const m = machine(mac);
          const next = m.stage >= 3 ? 4 : 2;
          if (ok && next >= m.stage) advance(mac, next, fileName(path));
          // A failed fetch mid-boot is the machine's error; before or after (an installer's
          // probe for an optional file) it is not.
          else if (!ok && e.outcome !== "aborted" && m.stage >= 1 && m.stage <= 4) advance(mac, m.stage, (kind === "tftp" ? e.outcome : "HTTP " + e.status) + ": " + fileName(path), true);
        }
        const what = kind === "tftp" ? e.file + " " + e.outcome + ", " + e.bytes + " bytes"
          : e.method + " " + e.path + " " + e.status + ", " + e.bytes + " bytes";
        return [mac ? machine(mac).node || mac : ip, what];
      }
      case "node_file":
        learn(e.mac, e.client, e.node);
        advance(e.mac, 5, "fetched " + e.file);
        return [e.node || e.mac, "node file " + e.file + " over " + e.via];
      case "progress":
        learn(e.mac, e.client, e.node);
        advance(e.mac, 5, "stage " + e.stage + (e.message ? ": " + e.message : ""));
        return [e.node || e.mac, "progress " + e.stage + (e.message ? ": " + e.message : "")];
      case "log": {
        const mac = e.mac || ipToMac.get(e.client);
        if (mac) {
          learn(mac, e.client, e.node);
          const m = machine(mac);
          m.log = (e.app ? e.app + ": " : "") + e.message;
          if (m.stage === 4) advance(mac, 5, "installer logging");
          dirty.add(mac);
        }
        return [e.node || e.hostname || e.client, (e.app ? e.app + ": " : "") + e.message];
      }
      case "snapshot":
        refreshSoon();
        return ["", "generation " + e.generation + " published, " + e.nodes + " nodes"];
      case "gap":
        return ["", "events missed (" + (e.reason || "gap") + ")"];
      default:
        return ["", JSON.stringify(e)];
    }
  }

  // ---- the event stream, over fetch (an EventSource cannot send a header) ----
  const RECENT = 300;
  const recent = []; // newest last: {id, kind, who, text, mac, at}
  const stats = { events: 0, lastId: null, maxLagMs: 0, rendered: 0, lastRenderAt: 0, connected: false };
  window.pservPage = stats;
  let pending = []; // {at} of events received and not yet rendered
  // The last event sent before the page opened (from /v1/counters): what `?since=0` replays.
  let replayUpTo = 0;
  const seqOf = (id) => +String(id).split("-").pop() || 0;
  let lastId = null;

  function onBlock(block) {
    let id = null, kind = "message", data = "";
    for (const line of block.split("\n")) {
      if (line.startsWith(":")) continue;
      const i = line.indexOf(":");
      const field = i < 0 ? line : line.slice(0, i);
      const value = i < 0 ? "" : line.slice(i + 1).replace(/^ /, "");
      if (field === "id") id = value;
      else if (field === "event") kind = value;
      else if (field === "data") data += (data ? "\n" : "") + value;
    }
    if (!data) return;
    let e;
    try { e = JSON.parse(data); } catch (_) { return; }
    if (id) { lastId = id; stats.lastId = id; }
    stats.events++;
    const [who, text] = apply(kind, e);
    const mac = e.mac || ipToMac.get(hostOf(e.client)) || nodeToMac.get(e.node) || "";
    // Events from before the page opened (replayed) have no time here: the server sends none.
    const replayed = id && seqOf(id) <= replayUpTo;
    recent.push({ n: stats.events, id, kind, who: who || "", text, mac, node: e.node || "", ip: e.ip || hostOf(e.client) || "", at: replayed ? 0 : Date.now() });
    if (recent.length > RECENT) recent.splice(0, recent.length - RECENT);
    pending.push(performance.now());
    scheduleRender();
  }

  async function stream() {
    for (;;) {
      try {
        // In batches of a tenth of a second: fewer, larger reads while a storm streams.
        const url = "/v1/events?batch_ms=100" + (lastId ? "" : "&since=0");
        const r = await fetch(url, { headers: headers(lastId ? { "Last-Event-ID": lastId } : {}), cache: "no-store" });
        if (r.status === 401) { streaming = false; askToken("The token was refused."); return; }
        if (!r.ok || !r.body) throw new Error("HTTP " + r.status);
        stats.connected = true;
        setConn("live", "live");
        const reader = r.body.getReader();
        const dec = new TextDecoder();
        let buf = "";
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          // CR LF and CR end lines too; a CR at a chunk's end waits for the next chunk's LF.
          buf += dec.decode(value, { stream: true });
          if (buf.includes("\r")) {
            const tail = buf.endsWith("\r") ? "\r" : "";
            buf = buf.slice(0, buf.length - tail.length).replace(/\r\n?/g, "\n") + tail;
          }
          // Every whole event in the buffer, then one cut (not a copy of the rest per event).
          let start = 0, i;
          while ((i = buf.indexOf("\n\n", start)) >= 0) {
            onBlock(buf.slice(start, i));
            start = i + 2;
          }
          if (start) buf = buf.slice(start);
        }
      } catch (err) {
        // Lost: retried below.
      }
      stats.connected = false;
      setConn("lost", "event stream lost, reconnecting…");
      await new Promise((res) => setTimeout(res, 1000));
    }
  }

  // ---- rendering, batched: at most five passes a second, however fast events come (a
  // storm brings thousands a second; a person reads a few updates a second, and the
  // browser's machine has other work) ----
  const RENDER_EVERY_MS = 200;
  let renderQueued = false;
  function scheduleRender() {
    if (renderQueued) return;
    renderQueued = true;
    setTimeout(() => { renderQueued = false; render(); }, RENDER_EVERY_MS);
  }
  function render() {
    for (const mac of dirty) {
      const row = visible.get(mac);
      if (row) paintProgress(row, machines.get(mac));
    }
    dirty.clear();
    renderSummary();
    renderEventsThrottled();
    const now = performance.now();
    for (const t of pending) stats.maxLagMs = Math.max(stats.maxLagMs, now - t);
    stats.rendered += pending.length;
    stats.renderedId = stats.lastId;
    stats.lastRenderAt = Date.now();
    pending = [];
  }

  function renderSummary() {
    const failed = failedCount;
    const el = $("stage-summary");
    const parts = [];
    for (let s = 1; s < STAGES.length; s++) parts.push([STAGES[s], counts[s], "stage-" + s]);
    if (failed) parts.push(["with errors", failed, "failed"]);
    if (el.childElementCount !== parts.length) {
      el.replaceChildren(...parts.map(() => document.createElement("span")));
    }
    parts.forEach(([name, n, key], i) => {
      const span = el.children[i];
      span.dataset.stage = key;
      span.dataset.count = n;
      span.textContent = name + ": " + n;
    });
  }

  function eventMatches(ev) {
    const kind = $("event-kind").value;
    if (kind && ev.kind !== kind) return false;
    const q = $("event-machine").value.trim().toLowerCase();
    if (!q) return true;
    const qm = q.replace(/-/g, ":");
    return [ev.who, ev.mac, ev.node, ev.ip].some((v) => v && v.toLowerCase().includes(v === ev.mac ? qm : q));
  }
  // The list changes at most once a second: it is the page's costliest part to draw, and a
  // storm brings thousands of events a second, more than anyone reads.
  let eventsShown = -1, eventsAt = 0, eventsTimer = null;
  function renderEventsThrottled() {
    const wait = 1000 - (performance.now() - eventsAt);
    if (wait <= 0) { renderEvents(); return; }
    if (!eventsTimer) eventsTimer = setTimeout(() => { eventsTimer = null; renderEvents(); }, wait);
  }
  const LISTED = 100;
  const two = (n) => (n < 10 ? "0" : "") + n;
  const clock = (ms) => { const d = new Date(ms); return two(d.getHours()) + ":" + two(d.getMinutes()) + ":" + two(d.getSeconds()); };
  function eventItem(ev) {
    const li = document.createElement("li");
    if (ev.kind === "gap") li.className = "gap";
    const t = document.createElement("span");
    t.textContent = ev.at ? clock(ev.at) : "earlier";
    const k = document.createElement("span");
    k.className = "kind";
    k.textContent = ev.kind;
    const w = document.createElement("span");
    w.textContent = (ev.who ? ev.who + "  " : "") + ev.text;
    w.title = w.textContent;
    li.append(t, k, w);
    li.dataset.id = ev.id || "";
    return li;
  }
  // New events go on top and the oldest leave at the bottom; the list is rebuilt only when a
  // filter changes.
  let listedUpTo = 0; // the `n` of the newest event considered for the list
  function renderEvents(force) {
    if (!force && eventsShown === stats.events) return;
    eventsShown = stats.events;
    eventsAt = performance.now();
    const list = $("event-list");
    if (force) {
      list.replaceChildren();
      listedUpTo = 0;
    }
    const fresh = [];
    for (let i = recent.length - 1; i >= 0 && recent[i].n > listedUpTo && fresh.length < LISTED; i--) {
      if (eventMatches(recent[i])) fresh.push(eventItem(recent[i]));
    }
    if (recent.length) listedUpTo = recent[recent.length - 1].n;
    if (fresh.length) list.prepend(...fresh);
    while (list.childElementCount > LISTED) list.lastElementChild.remove();
  }

  // ---- machines table: a page from the server, progress from the events ----
  let page = 0, total = 0;
  const PER_PAGE = 50;
  let searchSeq = 0;

  function cell(text, cls) {
    const td = document.createElement("td");
    if (cls) td.className = cls;
    td.textContent = text == null ? "" : String(text);
    td.title = td.textContent;
    return td;
  }
  function progressCell() {
    const td = document.createElement("td");
    const wrap = document.createElement("div");
    wrap.className = "stage";
    const steps = document.createElement("span");
    steps.className = "steps";
    steps.setAttribute("aria-hidden", "true");
    for (let i = 1; i < STAGES.length; i++) steps.append(document.createElement("i"));
    const text = document.createElement("span");
    text.className = "stage-text";
    wrap.append(steps, text);
    td.append(wrap);
    return td;
  }
  function paintProgress(row, m) {
    const stage = m ? m.stage : 0;
    const steps = row.progress.querySelectorAll(".steps i");
    steps.forEach((s, i) => s.classList.toggle("done", i < stage));
    const text = stage === 0 ? "no boot seen"
      : STAGES[stage] + " (" + stage + "/5)" + (m.failed ? " error: " : ": ") + m.detail;
    const t = row.progress.querySelector(".stage-text");
    t.textContent = text;
    t.title = text;
    row.tr.classList.toggle("failed", !!(m && m.failed));
    row.tr.dataset.stage = STAGES[stage] || "none";
    row.log.textContent = m ? m.log : "";
    row.log.title = row.log.textContent;
  }

  async function loadMachines() {
    const seq = ++searchSeq;
    const q = $("search").value.trim();
    const view = $("view").value;
    const path = (view === "nodes" ? "/v1/nodes" : "/v1/leases") + "?page=" + page + "&per_page=" + PER_PAGE + "&query=" + encodeURIComponent(q);
    const t0 = performance.now();
    const body = await api(path);
    if (seq !== searchSeq) return; // a newer search is on its way
    total = body.total;
    const rows = view === "nodes" ? body.nodes.map((n) => ({
      name: n.fqdn || n.hostname || n.id, mac: n.mac, ip: n.ipv4, node: n.id,
      mode: n.mode + (n.profile ? " · " + n.profile : ""),
    })) : body.leases.map((l) => ({ name: l.hostname || "(no name)", mac: l.mac, ip: l.ip, node: null, mode: "dynamic · " + l.state }));
    visible.clear();
    const trs = rows.map((r) => {
      if (r.mac) learn(r.mac, r.ip, r.node);
      const tr = document.createElement("tr");
      tr.dataset.mac = r.mac || "";
      const progress = progressCell();
      const log = cell("", "log");
      tr.append(cell(r.name), cell(r.mac), cell(r.ip), cell(r.mode), progress, log);
      const row = { tr, progress, log };
      if (r.mac) visible.set(r.mac, row);
      paintProgress(row, r.mac ? machines.get(r.mac) : null);
      return tr;
    });
    $("machine-rows").replaceChildren(...trs);
    const pages = Math.max(1, Math.ceil(total / PER_PAGE));
    if (page >= pages) { page = pages - 1; return loadMachines(); }
    $("page-label").textContent = "page " + (page + 1) + " of " + pages;
    $("match-count").textContent = total + (view === "nodes" ? " nodes" : " leases") + (q ? " match" : "") + " (" + (body.took_ms != null ? body.took_ms.toFixed(1) + " ms on the server, " : "") + Math.round(performance.now() - t0) + " ms here)";
    $("machines").dataset.total = total;
    $("machines").dataset.query = q;
    $("machines").dataset.tookMs = body.took_ms != null ? body.took_ms : "";
    $("prev").disabled = page === 0;
    $("next").disabled = page + 1 >= pages;
  }

  // ---- health, subnets, rates ----
  const fmtDuration = (s) => {
    const d = Math.floor(s / 86400), h = Math.floor(s % 86400 / 3600), m = Math.floor(s % 3600 / 60);
    return (d ? d + "d " : "") + (d || h ? h + "h " : "") + m + "m " + (s % 60) + "s";
  };
  async function loadStatus() {
    const s = await api("/v1/status", 503);
    $("generation").textContent = s.generation == null ? "none yet" : s.generation;
    $("published").textContent = s.published_at ? new Date(s.published_at * 1000).toLocaleString() : "–";
    $("node-count").textContent = s.nodes + " nodes, " + s.subnets + " subnets";
    $("uptime").textContent = fmtDuration(s.uptime_seconds);
    $("version").textContent = s.version;
    const log = s.cluster ? (s.cluster.healthy ? "etcd: healthy" : "etcd: UNHEALTHY" + (s.cluster.last_error ? " — " + s.cluster.last_error : ""))
      : (s.journal_error ? "journal: FAILED — " + s.journal_error : "journal: ok");
    $("lease-log").textContent = log;
    $("lease-log").title = log;
    $("services").replaceChildren(...(s.services || []).map((svc) => {
      const tr = document.createElement("tr");
      tr.append(cell(svc.name), cell(svc.addrs.join(", ")));
      return tr;
    }));
    const c = $("cluster");
    if (s.cluster) {
      c.textContent = "Cluster " + s.cluster.cluster + ", instance " + s.cluster.instance + ", " + s.cluster.buckets + "/256 buckets, members: " + s.cluster.members.join(", ");
    } else c.textContent = "";
  }

  async function loadSubnets() {
    const body = await api("/v1/subnets");
    $("subnet-rows").replaceChildren(...body.subnets.map((s) => {
      const u = s.use;
      const tr = document.createElement("tr");
      const bar = document.createElement("td");
      if (u.size > 0) {
        const b = document.createElement("div");
        b.className = "bar";
        b.setAttribute("role", "img");
        b.setAttribute("aria-label", u.bound + " bound, " + u.offered + " offered, " + u.declined + " declined, " + u.free + " free of " + u.size);
        for (const [k, n] of [["bound", u.bound], ["offered", u.offered], ["declined", u.declined]]) {
          const span = document.createElement("span");
          span.className = k;
          span.style.width = (100 * n / u.size) + "%";
          b.append(span);
        }
        bar.append(b);
        bar.title = Math.round(100 * (u.bound + u.offered + u.declined) / u.size) + "% in use of " + u.size;
      } else {
        bar.textContent = s.proxy_dhcp ? "proxyDHCP (no addresses)" : "no dynamic range";
      }
      tr.append(cell(s.cidr), bar, cell(u.bound), cell(u.offered), cell(u.free), cell(u.reservations));
      return tr;
    }));
  }

  const RATE_KEYS = ["dhcp_acks", "dns_responses", "tftp_bytes", "http_bytes"];
  const samples = []; // {at_ms, ...counters}
  const fmtRate = (key, v) => {
    if (key.endsWith("_bytes")) {
      const mb = v / 1e6;
      return (mb >= 10 ? mb.toFixed(0) : mb.toFixed(1)) + " MB/s";
    }
    return (v >= 100 ? Math.round(v).toLocaleString() : v.toFixed(1)) + "/s";
  };
  async function loadCounters() {
    const c = await api("/v1/counters");
    if (!samples.length) replayUpTo = c.events;
    samples.push(c);
    if (samples.length > 61) samples.shift();
    for (const key of RATE_KEYS) {
      const rates = [];
      for (let i = 1; i < samples.length; i++) {
        const dt = (samples[i].at_ms - samples[i - 1].at_ms) / 1000;
        rates.push(dt > 0 ? Math.max(0, samples[i][key] - samples[i - 1][key]) / dt : 0);
      }
      const now = rates.length ? rates[rates.length - 1] : 0;
      $("rate-" + key).textContent = rates.length ? fmtRate(key, now) : "–";
      draw($("chart-" + key), rates);
    }
  }
  function draw(canvas, values) {
    const g = canvas.getContext("2d");
    const w = canvas.width, h = canvas.height;
    g.clearRect(0, 0, w, h);
    const max = Math.max(1, ...values);
    g.strokeStyle = getComputedStyle(document.documentElement).getPropertyValue("--s2") || "#0b6bcb";
    g.lineWidth = 1.5;
    g.beginPath();
    values.forEach((v, i) => {
      const x = w - (values.length - 1 - i) * (w / 60);
      const y = h - 2 - (h - 4) * v / max;
      if (i === 0) g.moveTo(x, y); else g.lineTo(x, y);
    });
    g.stroke();
  }

  // ---- wiring ----
  let connState = "connecting";
  function setConn(state, text) {
    connState = state;
    const c = $("conn");
    c.dataset.state = state;
    c.textContent = text;
  }
  function askToken(message) {
    $("main").hidden = true;
    $("login").hidden = false;
    $("login-error").textContent = message || "";
    setConn("error", "token needed");
    $("token").focus();
  }
  let refreshTimer = null;
  function refreshSoon() {
    if (refreshTimer) return;
    refreshTimer = setTimeout(() => { refreshTimer = null; guard(loadStatus()); guard(loadSubnets()); guard(loadMachines()); }, 300);
  }
  function guard(p) {
    return p.catch((err) => {
      if (err instanceof NeedToken) askToken(token ? "The token was refused." : "");
      else setConn("error", String(err.message || err));
    });
  }

  let started = false, streaming = false;
  async function start() {
    try {
      await loadStatus();
    } catch (err) {
      if (err instanceof NeedToken) { askToken(token ? "The token was refused." : ""); return; }
      setConn("error", String(err.message || err));
      setTimeout(start, 2000);
      return;
    }
    $("login").hidden = true;
    $("main").hidden = false;
    if (!started) {
      started = true;
      await Promise.all([guard(loadSubnets()), guard(loadMachines()), guard(loadCounters())]);
      // Milliseconds from navigation to a page with every view filled.
      stats.firstRenderMs = performance.now();
      setInterval(() => guard(loadCounters()), 1000);
      setInterval(() => { guard(loadStatus()); guard(loadSubnets()); }, 5000);
      // Addresses change as leases come and go: the page shown is re-read now and then.
      setInterval(() => { if (!document.hidden) guard(loadMachines()); }, 10000);
    }
    // After the counters (which say what the replay holds); again after a new token.
    if (!streaming) { streaming = true; stream(); }
  }

  document.addEventListener("DOMContentLoaded", () => {
    for (const kind of ["snapshot", "dhcp", "proxy", "bound", "released", "declined", "expired", "quarantine_ended",
      "boot_config", "tftp", "http", "node_file", "progress", "log", "gap"]) {
      const o = document.createElement("option");
      o.value = kind;
      o.textContent = kind;
      $("event-kind").append(o);
    }
    let debounce = null;
    $("search").addEventListener("input", () => {
      clearTimeout(debounce);
      debounce = setTimeout(() => { page = 0; guard(loadMachines()); }, 150);
    });
    $("view").addEventListener("change", () => { page = 0; guard(loadMachines()); });
    $("prev").addEventListener("click", () => { if (page > 0) { page--; guard(loadMachines()); } });
    $("next").addEventListener("click", () => { page++; guard(loadMachines()); });
    $("event-kind").addEventListener("change", () => renderEvents(true));
    $("event-machine").addEventListener("input", () => renderEvents(true));
    $("login").addEventListener("submit", (ev) => {
      ev.preventDefault();
      token = $("token").value.trim();
      sessionStorage.setItem(TOKEN_KEY, token);
      $("token").value = "";
      start();
    });
    start();
  });
})();
