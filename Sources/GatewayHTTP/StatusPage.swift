/// The live status page served at `GET /`: one self-contained HTML document (inline CSS and JavaScript,
/// no external assets) that lists the registered nodes with their age and the recent registry events,
/// kept current from the Server-Sent Events stream at `v1/events` (a relative URL, so the page also works
/// behind a path prefix). Node names are untrusted: the script only ever sets them with `textContent`
/// and `setAttribute`. Each node row carries `data-node="NAME"`; `#nodes`, `#events` and `#state` are
/// the node table body, the event list and the connection state.
public enum StatusPage {
    /// The page as UTF-8 bytes, converted once.
    public static let html: [UInt8] = Array(Self.source.utf8)

    static let source = #"""
        <!doctype html>
        <html lang="en">
        <head>
        <meta charset="utf-8">
        <meta name="viewport" content="width=device-width, initial-scale=1">
        <meta name="color-scheme" content="light dark">
        <title>epmd-gateway</title>
        <link rel="icon" href="data:,">
        <style>
        :root {
          --bg: #fff; --fg: #1d2025; --muted: #6b7280; --line: #e5e7eb; --head: #f5f6f8;
          --ok: #15803d; --warn: #b45309; --bad: #b91c1c; --flash: #fef3c7;
        }
        @media (prefers-color-scheme: dark) {
          :root {
            --bg: #16181c; --fg: #e6e8eb; --muted: #9aa1ab; --line: #2c3037; --head: #1e2126;
            --ok: #4ade80; --warn: #fbbf24; --bad: #f87171; --flash: #3d3417;
          }
        }
        * { box-sizing: border-box; }
        body { margin: 0; background: var(--bg); color: var(--fg);
          font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
        header { display: flex; flex-wrap: wrap; align-items: baseline; gap: .4rem 1.5rem;
          padding: .9rem max(1.5rem, calc(50% - 30.5rem)); border-bottom: 1px solid var(--line); }
        h1 { font-size: 1.1rem; margin: 0; }
        h2 { font-size: .75rem; text-transform: uppercase; letter-spacing: .06em; color: var(--muted);
          margin: 1.5rem 0 .4rem; }
        main { max-width: 64rem; margin: 0 auto; padding: 0 1.5rem 2rem; }
        .meta, .time, .empty, th { color: var(--muted); }
        .meta b { color: var(--fg); font-variant-numeric: tabular-nums; }
        #state::before { content: ""; display: inline-block; width: .6em; height: .6em; border-radius: 50%;
          background: currentColor; margin-right: .4em; }
        #state { font-weight: 600; color: var(--warn); }
        #state.connected { color: var(--ok); }
        table { width: 100%; border-collapse: collapse; }
        th, td { text-align: left; padding: .4rem .6rem; border-bottom: 1px solid var(--line); }
        th { background: var(--head); font-weight: 600; font-size: .8rem; }
        td { white-space: nowrap; font-variant-numeric: tabular-nums; }
        td:first-child { font-weight: 600; white-space: normal; word-break: break-all; }
        tr.new { animation: flash 2.5s ease-out; }
        @keyframes flash { from { background: var(--flash); } to { background: transparent; } }
        .empty { margin: 0; padding: .5rem .6rem; }
        ol { list-style: none; margin: 0; padding: 0; display: grid; grid-template-columns: auto auto auto 1fr; }
        li { display: grid; grid-column: 1 / -1; grid-template-columns: subgrid; align-items: baseline;
          column-gap: .8rem; padding: .3rem .6rem; border-bottom: 1px solid var(--line); }
        li b { word-break: break-all; }
        li .badge { justify-self: start; }
        li .note { grid-column: 2 / -1; }
        .time { font-variant-numeric: tabular-nums; }
        .badge { font-size: .75rem; padding: 0 .45rem; border: 1px solid currentColor; border-radius: .6rem; }
        .registered { color: var(--ok); }
        .unregistered { color: var(--bad); }
        .note, .detail { color: var(--muted); }
        .flapping { color: var(--warn); font-weight: 700; }
        body.stale #nodes { opacity: .55; }
        </style>
        </head>
        <body>
        <header>
        <h1>epmd-gateway</h1>
        <span id="state" class="connecting">connecting</span>
        <span class="meta">generation <b id="generation">-</b></span>
        <span class="meta"><b id="count">0</b> nodes</span>
        </header>
        <main>
        <h2>Registered nodes</h2>
        <table>
        <thead><tr><th>Name</th><th>Port</th><th>Type</th><th>Age</th><th>Peer</th></tr></thead>
        <tbody id="nodes"></tbody>
        </table>
        <p id="empty" class="empty">No nodes registered.</p>
        <h2>Recent events</h2>
        <ol id="events"></ol>
        <p id="quiet" class="empty">No recent events.</p>
        <noscript><p>This page needs JavaScript; the same data is at <a href="v1/nodes">v1/nodes</a>.</p></noscript>
        </main>
        <script>
        "use strict";
        (() => {
          const $ = (id) => document.getElementById(id);
          const nodesBody = $("nodes"), eventList = $("events"), stateText = $("state");
          const maxEvents = 50;
          const nodes = new Map();
          let source = null, generation = null, resets = 0, retry = 1000, retryTimer = 0;

          function el(tag, className, text) {
            const e = document.createElement(tag);
            if (className) e.className = className;
            if (text !== undefined) e.textContent = String(text);
            return e;
          }
          function duration(seconds) {
            const s = Math.max(0, Math.floor(seconds));
            const d = Math.floor(s / 86400), h = Math.floor(s % 86400 / 3600), m = Math.floor(s % 3600 / 60);
            if (d) return d + " d " + h + " h";
            if (h) return h + " h " + m + " m";
            if (m) return m + " m " + (s % 60) + " s";
            return s + " s";
          }
          function lifetime(s) {
            if (typeof s !== "number" || !isFinite(s)) return "?";
            return s < 10 ? s.toFixed(1) + " s" : duration(s);
          }
          const pad = (n) => String(n).padStart(2, "0");
          function clock(iso) {
            const t = new Date(iso);
            return isNaN(t) ? String(iso || "") : pad(t.getHours()) + ":" + pad(t.getMinutes()) + ":" + pad(t.getSeconds());
          }

          function setState(state) {
            stateText.textContent = state;
            stateText.className = state;
            document.body.classList.toggle("stale", state !== "connected");
          }
          function setGeneration(g) {
            if (typeof g === "number") generation = g;
            $("generation").textContent = generation === null ? "-" : String(generation);
          }
          function counted() {
            $("count").textContent = String(nodes.size);
            $("empty").hidden = nodes.size > 0;
            document.title = "epmd-gateway (" + nodes.size + ")";
          }
          function showAge(entry) {
            entry.age.textContent = isNaN(entry.since) ? "?" : duration((Date.now() - entry.since) / 1000);
          }

          function removeNode(name) {
            const entry = nodes.get(name);
            if (entry) { entry.row.remove(); nodes.delete(name); }
          }
          function addNode(node, fresh) {
            if (!node || typeof node.name !== "string") return;
            const name = node.name;
            removeNode(name);
            const row = el("tr", fresh ? "new" : "");
            row.setAttribute("data-node", name);
            row.title = "creation " + node.creation + ", versions " + node.lowestVersion + "-" + node.highestVersion +
              ", protocol " + node.protocol + (node.extra ? ", extra " + node.extra : "") +
              ", registered " + node.registeredAt;
            const age = el("td");
            const type = node.type === "other" ? "other (" + node.typeCode + ")" : node.type;
            row.append(el("td", "", name), el("td", "", node.port), el("td", "", type), age, el("td", "", node.peer || ""));
            const entry = { row, age, since: Date.parse(node.registeredAt) };
            showAge(entry);
            let next = null;
            for (const other of nodesBody.children) {
              if (other.getAttribute("data-node") > name) { next = other; break; }
            }
            nodesBody.insertBefore(row, next);
            nodes.set(name, entry);
          }

          function logEvent(item, atEnd) {
            if (atEnd) eventList.append(item); else eventList.prepend(item);
            while (eventList.children.length > maxEvents) eventList.lastElementChild.remove();
            $("quiet").hidden = true;
          }
          function eventItem(data) {
            const node = data.node || {};
            const time = el("span", "time", clock(data.time));
            time.title = String(data.time);
            const item = el("li");
            item.append(time, el("span", "badge " + data.type, data.type), el("b", "", node.name));
            if (data.type === "registered") {
              item.append(el("span", "detail", "port " + node.port));
            } else {
              const detail = el("span", "detail", (data.reason || "?") + ", lived " + lifetime(data.lifetimeSeconds) + " ");
              if (data.flapping) detail.append(el("span", "badge flapping", "flapping"));
              item.append(detail);
            }
            return item;
          }
          // The events from before the page opened, below those the stream has brought since.
          async function loadHistory(upTo) {
            try {
              const response = await fetch("v1/events/history", { cache: "no-store" });
              const history = response.ok ? await response.json() : {};
              const older = (Array.isArray(history.events) ? history.events : []).filter((e) => e && e.id <= upTo);
              for (const data of older.reverse().slice(0, maxEvents)) logEvent(eventItem(data), true);
            } catch (e) {
              // Without the history the list starts empty.
            }
          }

          function onReset(data) {
            nodesBody.replaceChildren();
            nodes.clear();
            for (const node of data.nodes || []) addNode(node, false);
            setGeneration(data.generation);
            counted();
            if (resets++ === 0) {
              loadHistory(generation);
            } else {
              const note = el("li");
              note.append(el("span", "time", clock(new Date())), el("span", "note", "resynchronised at generation " + generation));
              logEvent(note, false);
            }
          }
          function onChange(data) {
            if (typeof data.id === "number" && generation !== null && data.id <= generation) return;
            const node = data.node || {};
            if (data.type === "registered") addNode(node, true); else removeNode(node.name);
            logEvent(eventItem(data), false);
            setGeneration(data.id);
            counted();
          }

          function listen(es, type, handler) {
            es.addEventListener(type, (message) => {
              let data;
              try { data = JSON.parse(message.data); } catch (e) { return; }
              if (data && typeof data === "object") handler(data);
            });
          }
          function connect() {
            clearTimeout(retryTimer);
            const es = source = new EventSource("v1/events");
            es.onopen = () => { retry = 1000; setState("connected"); };
            es.onerror = () => {
              if (es !== source) return;
              setState("reconnecting");
              if (es.readyState === EventSource.CLOSED) {
                retryTimer = setTimeout(connect, retry);
                retry = Math.min(retry * 2, 30000);
              }
            };
            listen(es, "reset", onReset);
            listen(es, "registered", onChange);
            listen(es, "unregistered", onChange);
          }

          setInterval(() => { for (const entry of nodes.values()) showAge(entry); }, 1000);
          counted();
          connect();
        })();
        </script>
        </body>
        </html>
        """#
}
