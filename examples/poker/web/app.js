// The poker page: a NATS client in the browser. Every action is a request on a poker.* subject over
// the broker's WebSocket listener (wsconnect from @nats-io/nats-core, bundled into nats.js by
// examples/poker/build-web.mjs); live updates come from poker.lobby.events and poker.table.<id>.events.
//
// Where to connect: config.json next to this page ({ws_url, user, password}, written by
// examples/poker/demo.mjs), each field overridable by the query (?ws=ws://host:port&user=u&pass=p).
// Who you are: {id, name, token} from poker.user.register, kept in sessionStorage (one player per tab).
// Every page shares one broker user that may read every inbox, so secrets come back sealed: the token
// in a box for this page's one-time X25519 key, the hole cards in a secretbox keyed by the token's SHA-512
// (the services' lib/common.js; examples/poker/README.md, "Sealed replies").

import { nacl, wsconnect } from "./nats.js";

const $ = (id) => document.getElementById(id);
const SUITS = { s: ["♠", false], h: ["♥", true], d: ["♦", true], c: ["♣", false] };
const enc = new TextEncoder();
const dec = new TextDecoder();

let nc = null;
let me = JSON.parse(sessionStorage.getItem("poker.me") || "null");
let tableId = sessionStorage.getItem("poker.table");
let tableSub = null;
let view = null; // the last table state
let turnClock = { key: "", endsAt: 0 }; // countdown of the current turn
let balance = null;

// ---- helpers ---------------------------------------------------------------------------------

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") e.className = v;
    else if (k === "text") e.textContent = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else if (v !== undefined && v !== null && v !== false) e.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children) if (c !== null && c !== undefined) e.append(c);
  return e;
}

function showError(message) {
  const box = $("error");
  box.textContent = message;
  box.hidden = !message;
}

/** One NATS request with a JSON body; a reply {"error": ...} becomes a thrown Error. */
async function req(subject, body = {}) {
  const msg = await nc.request(subject, enc.encode(JSON.stringify(body)), { timeout: 10_000 });
  const text = dec.decode(msg.data);
  let data;
  try {
    data = JSON.parse(text);
  } catch {
    throw new Error(`${subject}: the answer is not JSON: ${text.slice(0, 120)}`);
  }
  if (data && typeof data === "object" && !Array.isArray(data) && typeof data.error === "string") throw new Error(data.error);
  if (data && typeof data === "object" && data.error && typeof data.error.message === "string") throw new Error(data.error.message);
  return data;
}

/** Runs an action, showing its error instead of throwing. */
async function attempt(fn) {
  try {
    showError("");
    return await fn();
  } catch (err) {
    showError(String(err?.message ?? err));
    return undefined;
  }
}

function card(c) {
  if (!c || c === "??") return el("span", { class: "card back", text: "##" });
  const rank = c[0] === "T" ? "10" : c[0];
  const [suit, red] = SUITS[c[1]] ?? [c[1], false];
  return el("span", { class: red ? "card red" : "card", "data-card": c, text: rank + suit });
}

function cards(list) {
  return el("span", { class: "cards" }, ...(list ?? []).map(card));
}

const chips = (n) => (typeof n === "number" ? n.toLocaleString("en-US") : "–");

// ---- config and connection -------------------------------------------------------------------

async function loadConfig() {
  let config = {};
  try {
    const r = await fetch("config.json", { cache: "no-store" });
    if (r.ok) config = await r.json();
  } catch {
    // no config.json: the query must say where to connect
  }
  // The query may say where to connect only when the site has no config.json: a link with ?ws= would
  // otherwise send this tab's player token to whatever server it names.
  const q = config.ws_url ? new URLSearchParams() : new URLSearchParams(location.search);
  return {
    ws_url: config.ws_url ?? q.get("ws"),
    user: config.user ?? q.get("user"),
    password: config.password ?? q.get("pass"),
  };
}

async function connectBus() {
  const config = await loadConfig();
  if (!config.ws_url) throw new Error("no WebSocket URL: config.json has no ws_url and the page has no ?ws= parameter");
  // The pages' inboxes: poker-web may subscribe only below this prefix (demo.mjs, WEB_PERMISSIONS).
  const opts = { servers: config.ws_url, name: "poker page", maxReconnectAttempts: -1, inboxPrefix: "_INBOX.web" };
  if (config.user) Object.assign(opts, { user: config.user, pass: config.password ?? "" });
  nc = await wsconnect(opts);
  $("conn").textContent = "connected";
  $("conn").dataset.state = "connected";
  (async () => {
    for await (const s of nc.status()) {
      if (s.type === "disconnect") Object.assign($("conn"), { textContent: "reconnecting…" }).dataset.state = "connecting";
      if (s.type === "reconnect") Object.assign($("conn"), { textContent: "connected" }).dataset.state = "connected";
    }
  })();
}

// ---- who am I ----------------------------------------------------------------------------------

const fromHex = (h) => Uint8Array.from(h.match(/../g) ?? [], (b) => parseInt(b, 16));
const toHex = (bytes) => Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");

async function register(name) {
  const keys = nacl.box.keyPair();
  const r = await req("poker.user.register", { name, box_key: toHex(keys.publicKey) });
  const opened = nacl.box.open(fromHex(r.token_box.box), fromHex(r.token_box.nonce), fromHex(r.token_box.key), keys.secretKey);
  if (!opened) throw new Error("the user service's reply could not be opened");
  me = { id: r.id, name: r.name, token: dec.decode(opened) };
  sessionStorage.setItem("poker.me", JSON.stringify(me));
  await showLobby();
}

async function refreshBalance() {
  if (!me) return;
  try {
    const r = await req("poker.bank.balance", { user: me.id });
    balance = r.balance;
    $("balance").textContent = chips(balance);
  } catch (err) {
    showError(`balance: ${err.message}`);
  }
}

function signOut() {
  sessionStorage.clear();
  me = null;
  tableId = null;
  location.reload();
}

// ---- lobby -------------------------------------------------------------------------------------

let lobbyRefresh = null;
function refreshLobbySoon() {
  clearTimeout(lobbyRefresh);
  lobbyRefresh = setTimeout(() => void renderLobby(), 50);
}

async function renderLobby() {
  let tables;
  try {
    tables = await req("poker.lobby.list", {});
  } catch (err) {
    showError(`lobby: ${err.message}`);
    return;
  }
  if (!Array.isArray(tables)) tables = tables?.tables ?? [];
  const body = $("lobby-list");
  body.replaceChildren();
  $("lobby-empty").hidden = tables.length > 0;
  for (const t of tables) {
    const bb = t.big_blind ?? 2;
    const buyIn = el("input", { type: "number", min: 1, value: Math.min(bb * 50, balance ?? bb * 50), "aria-label": `buy-in for ${t.name}` });
    const join = el("button", { text: "Join", "data-join": t.id, onclick: () => attempt(() => joinTable(t.id, Number(buyIn.value))) });
    const close = el("button", { class: "secondary", text: "Close", title: "pays every player back and stops the table", "data-close": t.id, onclick: () => attempt(() => closeTable(t.id)) });
    body.append(
      el(
        "tr",
        { "data-table": t.id },
        el("td", { class: "t-name", text: t.name }),
        el("td", { text: `${t.players ?? 0} / ${t.seats}` }),
        el("td", { text: `${t.small_blind} / ${t.big_blind}` }),
        el("td", { text: t.state ?? "" }),
        el("td", {}, buyIn),
        el("td", {}, el("div", { class: "row-buttons" }, join, close)),
      ),
    );
  }
}

async function showLobby() {
  $("register").hidden = true;
  $("table").hidden = true;
  $("lobby").hidden = false;
  $("me").hidden = false;
  $("me-name").textContent = me.name;
  await refreshBalance();
  await renderLobby();
}

async function createTable() {
  const body = {
    name: $("create-name").value.trim(),
    seats: Number($("create-seats").value),
    small_blind: Number($("create-sb").value),
    big_blind: Number($("create-bb").value),
    turn_timeout_s: Number($("create-timeout").value),
    user: me.id,
    token: me.token,
  };
  await req("poker.lobby.create", body);
  await renderLobby();
}

async function closeTable(id) {
  await req("poker.lobby.close", { id, user: me.id, token: me.token });
  await renderLobby();
  await refreshBalance();
}

// ---- table -------------------------------------------------------------------------------------

async function joinTable(id, buyIn) {
  await req(`poker.table.${id}.join`, { user: me.id, token: me.token, buy_in: buyIn });
  await openTable(id);
}

async function openTable(id) {
  tableId = id;
  sessionStorage.setItem("poker.table", id);
  tableSub?.unsubscribe();
  tableSub = nc.subscribe(`poker.table.${id}.events`, {
    callback: (err) => {
      if (!err) refreshTableSoon();
    },
  });
  $("lobby").hidden = true;
  $("register").hidden = true;
  $("table").hidden = false;
  $("table").dataset.table = id;
  await refreshTable();
  await refreshBalance();
}

async function leaveTable() {
  const id = tableId;
  await req(`poker.table.${id}.leave`, { user: me.id, token: me.token });
  tableSub?.unsubscribe();
  tableSub = null;
  tableId = null;
  view = null;
  $("last-hand").hidden = true;
  delete $("last-hand").dataset.hand;
  sessionStorage.removeItem("poker.table");
  await showLobby();
}

let tableRefresh = null;
function refreshTableSoon() {
  clearTimeout(tableRefresh);
  tableRefresh = setTimeout(() => void refreshTable(), 30);
}

async function refreshTable() {
  if (!tableId) return;
  let state;
  try {
    state = await req(`poker.table.${tableId}.state`, { user: me.id, token: me.token, seal: true });
    const sealed = state?.you?.holeCards_sealed;
    if (sealed) {
      const key = nacl.hash(enc.encode(me.token)).subarray(0, nacl.secretbox.keyLength);
      const opened = nacl.secretbox.open(fromHex(sealed.box), fromHex(sealed.nonce), key);
      state.you.holeCards = opened ? JSON.parse(dec.decode(opened)) : null;
    }
  } catch (err) {
    showError(`table: ${err.message}`);
    return;
  }
  // Accept the state as it is, or wrapped as {state, you}.
  if (state && state.state && typeof state.state === "object") state = { ...state.state, ...state, state: undefined };
  const previousHand = view?.hand?.number;
  view = state;
  renderTable();
  if (view?.hand?.finished && previousHand !== undefined && view.hand.number !== previousHand) void refreshBalance();
  if (view?.hand?.finished) void refreshBalance();
}

/** The turn's deadline in ms since the epoch, if the table tells it; otherwise from turn_timeout_s. */
function turnEndsAt(state) {
  const hand = state.hand;
  const raw = state.turn_deadline ?? state.turnDeadline ?? state.deadline ?? state.turn_ends_at ?? state.turnEndsAt ?? hand?.deadline ?? hand?.turn_deadline ?? hand?.turnDeadline;
  if (typeof raw === "number") return raw < 1e11 ? raw * 1000 : raw;
  if (typeof raw === "string" && !Number.isNaN(Date.parse(raw))) return Date.parse(raw);
  const timeout = state.turn_timeout_s ?? state.config?.turn_timeout_s ?? state.config?.turnTimeoutS;
  const key = `${hand?.number}:${hand?.toAct}:${hand?.street}:${hand?.currentBet}`;
  if (typeof timeout !== "number") return 0;
  if (turnClock.key !== key) turnClock = { key, endsAt: Date.now() + timeout * 1000 };
  return turnClock.endsAt;
}

function nameOf(playerId) {
  const seat = (view?.seats ?? []).find((s) => s && s.id === playerId);
  return seat?.name ?? (playerId === me?.id ? me.name : playerId?.slice(0, 6));
}

function renderTable() {
  const s = view;
  if (!s) return;
  const hand = s.hand;
  const live = hand && !hand.finished;
  const you = s.you ?? {};
  $("table-title").textContent = s.name ?? s.config?.name ?? `Table ${tableId}`;
  const cfg = s.config ?? {};
  $("table-info").textContent = `blinds ${cfg.smallBlind ?? cfg.small_blind ?? "?"}/${cfg.bigBlind ?? cfg.big_blind ?? "?"}${s.handNumber ? ` · hand #${s.handNumber}` : ""}`;

  // Seats
  const seats = $("seats");
  seats.replaceChildren();
  (s.seats ?? []).forEach((seat, i) => {
    if (!seat) {
      seats.append(el("div", { class: "seat empty", "data-seat": i, text: `seat ${i + 1}: empty` }));
      return;
    }
    const hp = hand?.players?.find((p) => p.id === seat.id);
    const mine = seat.id === me?.id;
    const classes = ["seat"];
    if (live && hand.toAct === i) classes.push("turn");
    if (hp?.folded) classes.push("folded");
    if (mine) classes.push("mine");
    const tags = [];
    if (hand && hand.button === i) tags.push("dealer");
    if (live && hand.smallBlindSeat === i) tags.push("small blind");
    if (live && hand.bigBlindSeat === i) tags.push("big blind");
    if (hp?.folded) tags.push("folded");
    if (hp?.allIn) tags.push("all-in");
    if (seat.sittingOut) tags.push("sitting out");
    let shown = null;
    if (hp?.holeCards) shown = cards(hp.holeCards);
    else if (mine && you.holeCards) shown = cards(you.holeCards);
    else if (live && hp && !hp.folded) shown = cards(["??", "??"]);
    seats.append(
      el(
        "div",
        { class: classes.join(" "), "data-seat": i, "data-player": seat.id },
        hand && hand.button === i ? el("span", { class: "button-chip", title: "dealer", text: "D" }) : null,
        el("div", { class: "name", text: seat.name + (mine ? " (you)" : "") }),
        el("div", { class: "stack", "data-stack": seat.stack, text: `${chips(seat.stack)} chips` }),
        hp && live && hp.bet > 0 ? el("div", { class: "bet", text: `bet ${chips(hp.bet)}` }) : null,
        shown,
        tags.length ? el("div", { class: "tags", text: tags.join(" · ") }) : null,
      ),
    );
  });

  // Board and pot
  $("board").replaceChildren(...(hand?.board ?? []).map(card));
  $("pot").textContent = chips(hand ? (hand.finished ? 0 : hand.pot) : 0);
  $("street").textContent = hand ? (hand.finished ? "hand over" : hand.street) : "waiting for players";

  // Result of the last hand
  const result = $("result");
  if (hand?.finished && hand.result) {
    result.hidden = false;
    result.replaceChildren();
    result.dataset.showdown = String(!!hand.result.showdown);
    for (const pot of hand.result.pots ?? []) {
      for (const w of pot.winners ?? []) {
        const how = hand.result.showdown ? ` with ${pot.hand?.name ?? (hand.result.hands ?? []).find((h) => h.playerId === w.playerId)?.name ?? "the best hand"}` : " (everyone else folded)";
        result.append(el("div", { class: "winner", text: `${nameOf(w.playerId)} wins ${chips(w.amount)}${how}` }));
      }
    }
    if (hand.result.showdown) {
      for (const h of hand.result.hands ?? []) {
        const hole = hand.players?.find((p) => p.id === h.playerId)?.holeCards;
        result.append(el("div", { class: "shown" }, `${nameOf(h.playerId)} shows `, cards(hole ?? h.cards ?? []), ` ${h.name ?? ""}`));
      }
    }
    if (!result.childElementCount) result.append(el("div", { text: "hand over" }));
  } else {
    result.hidden = true;
    result.dataset.showdown = "";
  }

  // The last finished hand stays on show below the table while the next one is played.
  if (hand?.finished && hand.result && $("last-hand").dataset.hand !== String(hand.number)) {
    const last = $("last-hand");
    last.hidden = false;
    last.dataset.hand = String(hand.number);
    last.dataset.showdown = String(!!hand.result.showdown);
    last.replaceChildren(el("h3", { text: `Hand #${hand.number}` }), ...[...result.childNodes].map((n) => n.cloneNode(true)));
    if (hand.board?.length) last.append(el("div", { class: "shown" }, "board ", cards(hand.board)));
  }

  // Own cards
  $("hole").replaceChildren(...(you.holeCards ?? []).map(card));

  renderTurn();
  renderActions(you.legalActions ?? []);
}

function renderTurn() {
  const s = view;
  const turn = $("turn");
  const hand = s?.hand;
  if (!hand || hand.finished || hand.toAct === null || hand.toAct === undefined) {
    turn.textContent = hand?.finished ? "Next hand soon…" : "Waiting for players…";
    turn.className = "turn-label";
    return;
  }
  const seat = s.seats?.[hand.toAct];
  const mine = seat?.id === me?.id;
  const endsAt = turnEndsAt(s);
  const left = endsAt ? Math.max(0, Math.ceil((endsAt - Date.now()) / 1000)) : null;
  turn.className = mine ? "turn-label mine" : "turn-label";
  turn.textContent = `${mine ? "Your turn" : `${seat?.name ?? "?"}'s turn`}${left !== null ? ` · ${left}s` : ""}`;
}

function renderActions(legal) {
  const box = $("actions");
  box.replaceChildren();
  for (const a of legal) {
    const send = (amount) => attempt(async () => {
      await req(`poker.table.${tableId}.act`, { user: me.id, token: me.token, action: a.action, ...(amount !== undefined ? { amount } : {}) });
      await refreshTable();
    });
    if (a.action === "bet" || a.action === "raise") {
      const input = el("input", { type: "number", min: a.min, max: a.max, value: a.min, "aria-label": `${a.action} to` });
      box.append(input, el("button", { "data-action": a.action, text: a.action === "bet" ? "Bet" : "Raise to", onclick: () => send(Number(input.value)) }));
    } else {
      const label = { fold: "Fold", check: "Check", call: `Call ${chips(a.amount)}`, all_in: `All-in ${chips(a.amount)}` }[a.action] ?? a.action;
      box.append(el("button", { "data-action": a.action, class: a.action === "fold" ? "fold" : "", text: label, onclick: () => send() }));
    }
  }
}

// ---- start -------------------------------------------------------------------------------------

$("register-form").addEventListener("submit", (e) => {
  e.preventDefault();
  void attempt(() => register($("register-name").value.trim()));
});
$("create-form").addEventListener("submit", (e) => {
  e.preventDefault();
  void attempt(createTable);
});
$("leave").addEventListener("click", () => void attempt(leaveTable));
$("logout").addEventListener("click", signOut);
setInterval(() => {
  if (view && !$("table").hidden) renderTurn();
}, 250);
setInterval(() => {
  if (tableId && !$("table").hidden) void refreshTable();
  // Seat counts change without a lobby event (joins and leaves are table events): list again now and then.
  if (me && !$("lobby").hidden) refreshLobbySoon();
}, 5000);

try {
  await connectBus();
  nc.subscribe("poker.lobby.events", {
    callback: (err) => {
      if (!err && !$("lobby").hidden) refreshLobbySoon();
    },
  });
  if (!me) $("register").hidden = false;
  else if (tableId) await openTable(tableId);
  else await showLobby();
  document.body.dataset.ready = "true";
} catch (err) {
  $("conn").textContent = "not connected";
  $("conn").dataset.state = "failed";
  showError(`Cannot reach the poker services: ${err?.message ?? err}`);
  document.body.dataset.ready = "failed";
}
