// The signed-in page of the fastapi-authkit demo: plain JavaScript, no build step.
//
// Nothing here refreshes a token: the server does, before the route runs, on whatever
// request needs it. The page only asks GET /api/token every second (or after the
// Retry-After of a 503) and shows what changed: a new jti is a silent refresh.
"use strict";

const $ = (id) => document.getElementById(id);
const POLL_MS = 1000;
const SESSIONS_MS = 5000;
const MAX_EVENTS = 60;

// The CSRF cookie is the one auth cookie page JavaScript can read (double submit): every
// unsafe request sends it back in the X-CSRF-Token header.
function csrf() {
  const m = document.cookie.match(/(?:^|; )_auth_csrf=([^;]*)/);
  return m ? decodeURIComponent(m[1]) : "";
}

async function api(method, path, body) {
  const headers = {Accept: "application/json"};
  if (method !== "GET") headers["X-CSRF-Token"] = csrf();
  if (body !== undefined) headers["Content-Type"] = "application/json";
  return fetch(path, {
    method,
    headers,
    credentials: "same-origin",
    body: body === undefined ? undefined : JSON.stringify(body),
    signal: AbortSignal.timeout(10000),
  });
}

// --- time --------------------------------------------------------------------------------

let offset = 0; // server clock minus this one, seconds
const serverNow = () => Date.now() / 1000 + offset;
const clock = (t) => new Date(t * 1000).toLocaleTimeString([], {hour12: false});

function duration(s) {
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.round(s / 60)} min`;
  if (s < 2 * 86400) return `${Math.round(s / 3600)} h`;
  return `${Math.round(s / 86400)} days`;
}

const ago = (t) => (t === null || t === undefined ? "never"
  : `${duration(Math.max(0, Math.round(serverNow() - t)))} ago`);
const within = (t) => `in ${duration(Math.max(0, Math.round(t - serverNow())))}`;

// --- the access token ------------------------------------------------------------------

const remaining = $("remaining");
let token = {
  jti: $("jti").textContent,
  sid: $("sid").textContent,
  exp: Number(remaining.dataset.exp),
  iat: null,
};

function tick() {
  const left = Math.max(0, token.exp - serverNow());
  remaining.textContent = Math.ceil(left);
  const life = token.iat ? token.exp - token.iat : Math.max(left, 1);
  $("meter-fill").style.width = `${Math.min(100, (100 * left) / life)}%`;
  $("token-card").classList.toggle("expired", left <= 0);
}

function status(text, kind) {
  const el = $("status");
  el.textContent = text;
  el.className = `status ${kind}`;
}

// --- the timeline ----------------------------------------------------------------------

let refreshes = 0;

function addEvent(kind, title, detail, data = {}) {
  const li = document.createElement("li");
  li.className = `ev ev-${kind}`;
  for (const [k, v] of Object.entries(data)) li.dataset[k] = v;
  const time = document.createElement("time");
  time.textContent = clock(serverNow());
  const what = document.createElement("span");
  what.className = "what";
  what.textContent = title;
  const more = document.createElement("span");
  more.className = "detail";
  if (detail instanceof Node) more.append(detail);
  else more.textContent = detail;
  li.append(time, what, more);
  const list = $("timeline");
  list.prepend(li);
  while (list.children.length > MAX_EVENTS) list.lastElementChild.remove();
}

function code(text) {
  const c = document.createElement("code");
  c.textContent = text;
  return c;
}

function transition(from, to, note) {
  const span = document.createElement("span");
  span.append(code(from), " → ", code(to));
  if (note) span.append(` · ${note}`);
  return span;
}

// --- polling /api/token ----------------------------------------------------------------

let outage = null; // {since, answers} while refreshes fail
let failingNoted = false;

function showOutage(title, detail) {
  $("outage").hidden = false;
  $("outage-title").textContent = title;
  $("outage-detail").textContent = detail;
}

async function poll() {
  let delay = POLL_MS;
  try {
    const r = await api("GET", "/api/token");
    if (r.status === 200) {
      const t = await r.json();
      offset = t.now - Date.now() / 1000;
      if (t.jti !== token.jti) {
        refreshes += 1;
        $("refresh-count").textContent = refreshes;
        const same = t.sid === token.sid ? "same session" : "new session";
        const by = t.refreshed ? "by this request" : "by another request";
        const kind = outage ? "recovered" : "refresh";
        const title = outage ? "Recovered: refreshed" : "Refreshed silently";
        addEvent(kind, title, transition(token.jti, t.jti, `${by} · ${same}`), {
          from: token.jti,
          to: t.jti,
        });
        if (outage) $("outage").hidden = true;
        outage = null;
        failingNoted = false;
        $("jti").textContent = t.jti;
        $("sid").textContent = t.sid;
      }
      token = t;
      if (t.refresh_failing) {
        const left = Math.round(t.exp - t.now);
        if (!failingNoted) {
          addEvent("failed", "Refresh failed", `token still valid for ${left} s · nothing cleared`);
          failingNoted = true;
        }
        status(`refresh failing · still valid`, "warn");
        showOutage("Refreshes are failing", `The access token is still valid for ${left} s: ` +
          "requests keep working, no cookie is touched.");
      } else {
        status("valid", "ok");
        $("outage").hidden = true;
      }
      tick();
    } else if (r.status === 503) {
      const retry = Number(r.headers.get("Retry-After")) || 5;
      delay = retry * 1000;
      // Expired for the server (the browser drops the access cookie at its Max-Age, which
      // is whole seconds): the countdown says so too.
      token.exp = Math.min(token.exp, serverNow());
      tick();
      if (!outage) {
        outage = {since: serverNow(), answers: 0};
        addEvent("unavailable", "503 Service Unavailable",
              `Retry-After: ${retry} s · still signed in, cookies untouched`, {retry});
      }
      outage.answers += 1;
      status(`503 · retrying in ${retry} s`, "bad");
      showOutage(`503 with Retry-After: ${retry}`,
        `The token has expired and cannot be refreshed right now (${outage.answers} ` +
        `answer${outage.answers > 1 ? "s" : ""} so far). You stay signed in: the first ` +
        "request after recovery refreshes this same session.");
    } else if (r.status === 401) {
      location.href = "/login"; // signed out (revoked from another device, or everywhere)
      return;
    } else {
      status(`HTTP ${r.status}`, "bad");
    }
  } catch (err) {
    status("server unreachable", "bad");
  }
  setTimeout(poll, delay);
}

// --- sessions --------------------------------------------------------------------------

function device(ua) {
  if (!ua) return "Unknown device";
  const browser = [["Edg/", "Edge"], ["OPR/", "Opera"], ["Firefox/", "Firefox"],
    ["HeadlessChrome/", "Headless Chrome"], ["Chrome/", "Chrome"], ["Safari/", "Safari"],
    ["curl/", "curl"]].find(([needle]) => ua.includes(needle));
  const os = [["iPhone", "iPhone"], ["iPad", "iPad"], ["Android", "Android"],
    ["Windows", "Windows"], ["Mac OS X", "macOS"], ["Linux", "Linux"]]
    .find(([needle]) => ua.includes(needle));
  const name = browser ? browser[1] : ua.split(/[ /]/)[0];
  return os ? `${name} on ${os[1]}` : name;
}

function cell(text, title) {
  const td = document.createElement("td");
  td.textContent = text;
  if (title) td.title = title;
  return td;
}

function sessionRow(s) {
  const tr = document.createElement("tr");
  tr.dataset.id = s.id;
  if (s.current) tr.className = "current";
  const dev = cell("", s.user_agent || "");
  const name = document.createElement("strong");
  name.textContent = device(s.user_agent);
  dev.append(name);
  if (s.current) {
    const badge = document.createElement("span");
    badge.className = "badge";
    badge.textContent = "this browser";
    dev.append(" ", badge);
  }
  const ua = document.createElement("small");
  ua.textContent = s.user_agent || "no user agent";
  dev.append(ua);
  const action = document.createElement("td");
  const button = document.createElement("button");
  button.className = s.current ? "revoke ghost" : "revoke";
  button.textContent = s.current ? "Sign out" : "Revoke";
  button.onclick = () => revoke(s.id, button);
  action.append(button);
  const signedIn = s.signed_in_ip && s.signed_in_ip !== s.ip ? ` from ${s.signed_in_ip}` : "";
  tr.append(
    dev,
    cell(s.ip || "unknown"),
    cell(s.created_at ? ago(s.created_at) + signedIn : "before this was recorded",
         s.created_at ? new Date(s.created_at * 1000).toLocaleString() : ""),
    cell(ago(s.refreshed_at), s.refreshed_at ? new Date(s.refreshed_at * 1000).toLocaleString() : ""),
    cell(within(s.expires_at), new Date(s.expires_at * 1000).toLocaleString()),
    action,
  );
  return tr;
}

async function loadSessions() {
  try {
    const r = await api("GET", "/api/sessions");
    if (r.status === 200) $("sessions").replaceChildren(...(await r.json()).map(sessionRow));
  } catch (err) {
    // The next round tries again.
  }
}

async function revoke(id, button) {
  button.disabled = true;
  try {
    const r = await api("DELETE", `/api/sessions/${encodeURIComponent(id)}`);
    if (r.status === 200 && (await r.json()).signed_out) {
      location.href = "/login";
      return;
    }
  } catch (err) {
    button.disabled = false;
  }
  await loadSessions();
}

// --- the failure switch ----------------------------------------------------------------

const failSwitch = $("fail-switch");

function showSwitch(failing) {
  failSwitch.checked = failing;
  $("switch-label").textContent = failing ? "Failing: every refresh raises" : "Working";
  $("switch-card").classList.toggle("failing", failing);
}

failSwitch.onchange = async () => {
  const failing = failSwitch.checked;
  const r = await api("PUT", "/api/token-endpoint", {failing}).catch(() => null);
  if (r && r.status === 200) {
    showSwitch(failing);
    addEvent("switch", failing ? "Endpoint set to fail" : "Endpoint back",
             failing ? "the next refresh raises" : "the next request that needs it refreshes");
  } else {
    showSwitch(!failing);
  }
};

async function loadSwitch() {
  try {
    const r = await api("GET", "/api/token-endpoint");
    if (r.status === 200) showSwitch((await r.json()).failing);
    else if (r.status === 404) $("switch-card").hidden = true; // an app without the switch
  } catch (err) {
    // Shown as it is (working) until the next toggle.
  }
}

// --- buttons ---------------------------------------------------------------------------

$("me").onclick = async () => {
  const r = await api("GET", "/api/me");
  $("out").textContent = `${r.status} ${await r.text()}`;
};

$("ping").onclick = async () => {
  const r = await api("POST", "/api/ping");
  $("out").textContent = `${r.status} ${await r.text()}`;
};

for (const [id, path] of [["logout", "/logout"], ["logout-everywhere", "/logout-everywhere"]]) {
  $(id).onclick = async () => {
    await api("POST", path);
    location.href = "/login";
  };
}

const first = document.createElement("span");
first.append(code(token.jti), " · the token this page came with");
addEvent("loaded", "Page loaded", first, {to: token.jti});
tick();
setInterval(tick, 250);
poll();
loadSessions();
setInterval(loadSessions, SESSIONS_MS);
loadSwitch();
