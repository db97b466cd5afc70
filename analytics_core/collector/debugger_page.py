"""The collector's debugger page, served at ``/``: what arrived, newest first, live.

Plain HTML, CSS and a little JavaScript, served by the collector itself: no build step, no
dependency. The page reads ``GET /v1/events`` (the same API the tests use): it filters by type,
event name, user (userId or anonymousId) and write key, polls every second for events newer
than the newest it shows, and shows an event's full JSON when its row is clicked.
"""

__all__ = ["PAGE"]

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>analytics-core collector: debugger</title>
<style>
  :root { color-scheme: light dark; --line: #8884; --accent: #2f6fdf; }
  body { font: 14px/1.4 system-ui, sans-serif; margin: 0; }
  header { padding: 12px 16px; border-bottom: 1px solid var(--line); display: flex;
           gap: 12px; align-items: center; flex-wrap: wrap; }
  header h1 { font-size: 16px; margin: 0 12px 0 0; }
  label { display: flex; gap: 4px; align-items: center; }
  input, select { font: inherit; padding: 3px 6px; }
  #status { margin-left: auto; opacity: .7; }
  main { display: grid; grid-template-columns: minmax(0, 3fr) minmax(0, 2fr); }
  table { width: 100%; border-collapse: collapse; }
  th, td { text-align: left; padding: 6px 10px; border-bottom: 1px solid var(--line);
           white-space: nowrap; overflow: hidden; text-overflow: ellipsis; max-width: 18em; }
  tbody tr { cursor: pointer; }
  tbody tr:hover { background: #8881; }
  tbody tr.selected { background: #2f6fdf33; }
  .type { font-weight: 600; }
  #details { border-left: 1px solid var(--line); padding: 12px 16px; }
  #details pre { white-space: pre-wrap; word-break: break-word; font-size: 12px; }
  .empty { padding: 16px; opacity: .7; }
</style>
</head>
<body>
<header>
  <h1>analytics-core collector</h1>
  <label>type
    <select id="filter-type">
      <option value="">all</option>
      <option>identify</option><option>track</option><option>page</option>
      <option>screen</option><option>group</option><option>alias</option>
    </select>
  </label>
  <label>event <input id="filter-event" placeholder="Order Completed" size="16"></label>
  <label>user <input id="filter-user" placeholder="userId or anonymousId" size="18"></label>
  <label>write key <input id="filter-write-key" size="14"></label>
  <span id="status">connecting…</span>
</header>
<main>
  <section>
    <table>
      <thead><tr><th>received</th><th>type</th><th>event / name</th><th>user</th>
        <th>write key</th></tr></thead>
      <tbody id="events"></tbody>
    </table>
    <div id="empty" class="empty">No events yet. Send some: they appear here as they arrive.</div>
  </section>
  <aside id="details"><p class="empty">Click an event to see its JSON.</p></aside>
</main>
<script>
"use strict";
const LIMIT = 200;
const rows = document.getElementById("events");
const details = document.getElementById("details");
const statusLine = document.getElementById("status");
const filters = {
  type: document.getElementById("filter-type"),
  event: document.getElementById("filter-event"),
  user: document.getElementById("filter-user"),
  writeKey: document.getElementById("filter-write-key"),
};
let newestId = 0;
let shown = [];
let generation = 0;

function query(extra) {
  const params = new URLSearchParams({limit: String(LIMIT), ...extra});
  if (filters.type.value) params.set("type", filters.type.value);
  if (filters.event.value.trim()) params.set("event", filters.event.value.trim());
  if (filters.writeKey.value.trim()) params.set("write_key", filters.writeKey.value.trim());
  return params;
}

async function fetchEvents(extra) {
  // The user filter matches userId or anonymousId: two queries, merged by id.
  const user = filters.user.value.trim();
  const lists = [];
  for (const field of user ? ["user_id", "anonymous_id"] : [null]) {
    const params = query(extra);
    if (field) params.set(field, user);
    const response = await fetch("/v1/events?" + params);
    if (!response.ok) throw new Error("HTTP " + response.status);
    lists.push(await response.json());
  }
  const byId = new Map();
  for (const list of lists) for (const event of list) byId.set(event._id, event);
  return [...byId.values()].sort((a, b) => b._id - a._id);
}

function cell(text, className) {
  const td = document.createElement("td");
  td.textContent = text == null ? "" : String(text);
  if (className) td.className = className;
  return td;
}

function row(event) {
  const tr = document.createElement("tr");
  tr.dataset.id = event._id;
  tr.append(
    cell((event._received_at || "").replace("T", " ").slice(0, 19)),
    cell(event.type, "type"),
    cell(event.event || event.name || event.groupId || event.previousId || ""),
    cell(event.userId || event.anonymousId || ""),
    cell(event._write_key),
  );
  tr.addEventListener("click", () => select(event, tr));
  return tr;
}

function select(event, tr) {
  for (const other of rows.querySelectorAll("tr.selected")) other.classList.remove("selected");
  tr.classList.add("selected");
  const title = document.createElement("h2");
  title.textContent = event.type + (event.event ? ": " + event.event : "");
  const pre = document.createElement("pre");
  pre.id = "event-json";
  pre.textContent = JSON.stringify(event, null, 2);
  details.replaceChildren(title, pre);
}

function show(events, prepend) {
  const fragment = document.createDocumentFragment();
  for (const event of events) fragment.append(row(event));
  if (prepend) rows.prepend(fragment); else rows.replaceChildren(fragment);
  shown = prepend ? events.concat(shown) : events;
  while (rows.children.length > LIMIT) rows.lastElementChild.remove();
  if (events.length) newestId = Math.max(newestId, events[0]._id);
  document.getElementById("empty").hidden = rows.children.length > 0;
}

async function reload() {
  const mine = ++generation;
  newestId = 0;
  try {
    const events = await fetchEvents({});
    if (mine !== generation) return;
    show(events, false);
    statusLine.textContent = "live";
  } catch (error) {
    statusLine.textContent = "collector unreachable (" + error.message + ")";
  }
}

async function poll() {
  const mine = generation;
  try {
    const events = await fetchEvents({after_id: String(newestId)});
    if (mine === generation && events.length) show(events, true);
    statusLine.textContent = "live";
  } catch (error) {
    statusLine.textContent = "collector unreachable (" + error.message + ")";
  }
  setTimeout(poll, 1000);
}

let typing;
for (const input of Object.values(filters)) {
  input.addEventListener("input", () => {
    clearTimeout(typing);
    typing = setTimeout(reload, 250);
  });
}
reload().then(() => setTimeout(poll, 1000));
</script>
</body>
</html>
"""
