"""The collector's debugger page, served at ``/``: what arrived, newest first, live.

Plain HTML, CSS and a little JavaScript, served by the collector itself: no build step, no
dependency. The page reads ``GET /v1/events`` (the same API the tests use): it filters by type,
event name, user (userId or anonymousId) and write key (or its fingerprint), polls every second
for events newer than the newest it shows, and shows an event's full JSON when its row is
clicked. Rows show a fingerprint of the write key, never the key. When the collector has a
write key, the page asks for it once and keeps it in the tab (``sessionStorage``: gone when the
tab closes), sending it as Basic auth like the Tracking API.
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
  table { width: 100%; border-collapse: collapse; table-layout: fixed; }
  section { overflow-x: auto; }
  th, td { text-align: left; padding: 6px 10px; border-bottom: 1px solid var(--line);
           white-space: nowrap; overflow: hidden; text-overflow: ellipsis; max-width: 18em; }
  tbody tr { cursor: pointer; }
  tbody tr:hover { background: #8881; }
  tbody tr.selected { background: #2f6fdf33; }
  .type { font-weight: 600; }
  #details { border-left: 1px solid var(--line); padding: 12px 16px; }
  #details pre { white-space: pre-wrap; word-break: break-word; font-size: 12px; }
  .empty { padding: 16px; opacity: .7; }
  #key-form[hidden] { display: none; }
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
  <label>write key <input id="filter-write-key" placeholder="key or fingerprint" size="14"></label>
  <form id="key-form" hidden>
    <label>this collector's write key <input id="key-input" type="password" size="14"
      autocomplete="off"></label>
    <button type="submit">show events</button>
  </form>
  <span id="status">connecting…</span>
</header>
<main>
  <section>
    <table>
      <thead><tr><th>received</th><th>type</th><th>event / name</th><th>user</th>
        <th>key fingerprint</th></tr></thead>
      <tbody id="events"></tbody>
    </table>
    <div id="empty" class="empty">No events yet. Send some: they appear here as they arrive.</div>
    <div id="more" class="empty" hidden>Showing the newest 200: filter to find older ones.</div>
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
const KEY_ITEM = "analytics-core-collector-write-key";
const keyForm = document.getElementById("key-form");
const keyInput = document.getElementById("key-input");

class NeedsKey extends Error {}

function authorization() {
  // Basic auth with the key as user name, as the Tracking API takes it (UTF-8, then base64).
  const key = sessionStorage.getItem(KEY_ITEM);
  if (!key) return {};
  const bytes = new TextEncoder().encode(key + ":");
  return {Authorization: "Basic " + btoa(String.fromCharCode(...bytes))};
}

async function keyFilter() {
  // A key typed here is sent as its fingerprint, so it never appears in a URL or a log.
  const value = filters.writeKey.value.trim();
  if (!value || /^[0-9a-f]{12}$/.test(value) || !(window.crypto && crypto.subtle)) return value;
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(value));
  const hex = [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0"));
  return hex.join("").slice(0, 12);
}

async function query(extra) {
  const params = new URLSearchParams({limit: String(LIMIT), ...extra});
  if (filters.type.value) params.set("type", filters.type.value);
  if (filters.event.value.trim()) params.set("event", filters.event.value.trim());
  const key = await keyFilter();
  if (key) params.set("write_key", key);
  return params;
}

async function fetchEvents(extra) {
  // The user filter matches userId or anonymousId: two queries, merged by id.
  const user = filters.user.value.trim();
  const lists = [];
  for (const field of user ? ["user_id", "anonymous_id"] : [null]) {
    const params = await query(extra);
    if (field) params.set(field, user);
    const response = await fetch("/v1/events?" + params, {headers: authorization()});
    if (response.status === 401) throw new NeedsKey();
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
    cell(event._write_key_fingerprint),
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
  // A poll that began while a reload was fetching asked for everything after id 0: what the
  // reload has shown since must not be listed twice.
  if (prepend) events = events.filter((event) => event._id > newestId);
  const fragment = document.createDocumentFragment();
  for (const event of events) fragment.append(row(event));
  if (prepend) rows.prepend(fragment); else rows.replaceChildren(fragment);
  shown = prepend ? events.concat(shown) : events;
  while (rows.children.length > LIMIT) rows.lastElementChild.remove();
  if (events.length) newestId = Math.max(newestId, events[0]._id);
  document.getElementById("empty").hidden = rows.children.length > 0;
  document.getElementById("more").hidden = rows.children.length < LIMIT;
}

async function reload() {
  const mine = ++generation;
  newestId = 0;
  try {
    const events = await fetchEvents({});
    if (mine !== generation) return;
    show(events, false);
    keyForm.hidden = true;
    statusLine.textContent = "live";
  } catch (error) {
    failed(error);
  }
}

function failed(error) {
  if (error instanceof NeedsKey) {
    keyForm.hidden = false;
    statusLine.textContent = sessionStorage.getItem(KEY_ITEM)
      ? "that write key is not this collector's"
      : "this collector has a write key: enter it to see its events";
  } else {
    statusLine.textContent = "collector unreachable (" + error.message + ")";
  }
}

keyForm.addEventListener("submit", (submitted) => {
  submitted.preventDefault();
  sessionStorage.setItem(KEY_ITEM, keyInput.value);
  keyInput.value = "";
  reload();
});

async function poll() {
  const mine = generation;
  try {
    const events = await fetchEvents({after_id: String(newestId)});
    if (mine === generation && events.length) show(events, true);
    if (keyForm.hidden) statusLine.textContent = "live";
  } catch (error) {
    failed(error);
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
