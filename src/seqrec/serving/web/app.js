// seqrec web page: search items, build a history, see recommendations update live.
// Plain JavaScript, no build step; talks to the same service (/items, /recommend, /model, /users/{id}/history).
// A service started with --protect-reads needs its key: localStorage.setItem("seqrec.apiKey", KEY).
"use strict";

const $ = (id) => document.getElementById(id);
const STORE = "seqrec.history";
const state = { history: [], stored: [], selected: null, recSeq: 0, searchSeq: 0, similarSeq: 0, storeSeq: 0 };

function apiKey() {
  try { return localStorage.getItem("seqrec.apiKey"); } catch (_) { return null; }
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v);
  }
  for (const c of children) if (c != null) node.append(c);
  return node;
}

const titleOf = (item) => item.title || `Item ${item.item_id}`;
const sameId = (a, b) => String(a) === String(b);

async function api(path, options = {}) {
  const key = apiKey();
  const res = await fetch(path, {
    headers: { "Content-Type": "application/json", ...(key ? { "X-API-Key": key } : {}) },
    ...options,
  });
  if (!res.ok) {
    let detail = res.statusText;
    try { const body = await res.json(); detail = typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail); } catch (_) { /* keep statusText */ }
    throw new Error(`${res.status}: ${detail}`);
  }
  return res.json();
}

function showError(err) {
  const box = $("error");
  if (!err) { box.classList.add("hidden"); box.textContent = ""; return; }
  box.textContent = String(err.message || err);
  box.classList.remove("hidden");
}

function chips(genres) {
  if (!genres || !genres.length) return null;
  return el("span", { class: "chips" }, ...genres.slice(0, 4).map((g) => el("span", { class: "chip", "data-testid": "feature-chip", text: g })));
}

// An item's features: a ranked item's `features` ({genres: [...], year: 1994, ...}), else the facts of /items.
const featuresOf = (item) => (item.features && typeof item.features === "object" ? item.features : {});
const genresOf = (item) => {
  const g = featuresOf(item).genres;
  return Array.isArray(g) ? g : (item.genres || []);
};
const yearOf = (item) => {
  const y = featuresOf(item).year;
  return y != null ? y : item.year;
};
// No interactions in the training data: `interactions` of a ranked item, `popularity` of /items.
const isNew = (item) => item.interactions === 0 || item.popularity === 0 || item.fresh === true;
const NEW_TIP = "no interactions yet — ranked by its features";

function newBadge(item) {
  return isNew(item) ? el("span", { class: "new-badge", "data-testid": "new-badge", title: NEW_TIP, text: "new" }) : null;
}

// Chips of the genres, the year, and any other feature field (text values, at most a few in all), after the
// "new" badge of an item without interactions.
function featureChips(item) {
  const feats = featuresOf(item);
  const values = [...genresOf(item)];
  for (const [name, v] of Object.entries(feats)) {
    if (name === "genres" || name === "year") continue;
    if (Array.isArray(v)) values.push(...v.map(String));
    else if (v != null && v !== "") values.push(`${name}: ${v}`);
  }
  const year = yearOf(item);
  const lead = [newBadge(item),
    year == null ? null : el("span", { class: "chip year", "data-testid": "item-year", title: "year", text: String(year) })]
    .filter(Boolean);
  const box = chips(values);
  if (!lead.length) return box;
  if (!box) return el("span", { class: "chips" }, ...lead);
  box.prepend(...lead);
  return box;
}

function itemText(item, meta) {
  return el("span", { class: "item-text" },
    el("span", { class: "item-title", text: titleOf(item), title: titleOf(item) }),
    el("span", { class: "item-meta" }, newBadge(item), meta));
}

// ------------------------------------------------------------------ history
function saveHistory() {
  try { localStorage.setItem(STORE, JSON.stringify(state.history)); } catch (_) { /* private mode */ }
}

function loadHistory() {
  try {
    const saved = JSON.parse(localStorage.getItem(STORE) || "[]");
    if (Array.isArray(saved)) state.history = saved.filter((x) => x && x.item_id != null);
  } catch (_) { state.history = []; }
}

function addToHistory(item) {
  state.history.push({ item_id: item.item_id, title: item.title, genres: genresOf(item), year: yearOf(item) ?? null,
    fresh: isNew(item) });
  historyChanged();
}

function moveHistory(from, to) {
  if (to < 0 || to >= state.history.length || from === to) return;
  const [moved] = state.history.splice(from, 1);
  state.history.splice(to, 0, moved);
  historyChanged();
}

function removeHistory(index) {
  state.history.splice(index, 1);
  historyChanged();
}

function historyChanged() {
  saveHistory();
  renderHistory();
  refreshRecommendations();
}

function renderHistory() {
  const list = $("history");
  list.replaceChildren();
  const n = state.history.length;
  $("history-count").textContent = String(n);
  $("history-empty").classList.toggle("hidden", n > 0);
  state.history.forEach((item, i) => {
    const li = el("li", { draggable: "true", "data-testid": "history-item", "data-item-id": String(item.item_id) },
      itemText(item, [yearOf(item), (item.genres || []).join(", ")].filter(Boolean).join(" · ") || `id ${item.item_id}`),
      el("span", { class: "tools" },
        el("button", { class: "icon", type: "button", title: "Move up", "aria-label": "Move up", "data-testid": "move-up", text: "↑", onclick: () => moveHistory(i, i - 1) }),
        el("button", { class: "icon", type: "button", title: "Move down", "aria-label": "Move down", "data-testid": "move-down", text: "↓", onclick: () => moveHistory(i, i + 1) }),
        el("button", { class: "icon", type: "button", title: "Remove", "aria-label": "Remove", "data-testid": "remove", text: "✕", onclick: () => removeHistory(i) })));
    li.querySelector('[data-testid="move-up"]').disabled = i === 0;
    li.querySelector('[data-testid="move-down"]').disabled = i === n - 1;
    li.querySelector(".item-text").addEventListener("click", () => showSimilar(item));
    li.addEventListener("dragstart", (e) => { li.classList.add("dragging"); e.dataTransfer.setData("text/plain", String(i)); });
    li.addEventListener("dragend", () => li.classList.remove("dragging"));
    li.addEventListener("dragover", (e) => { e.preventDefault(); li.classList.add("drop-target"); });
    li.addEventListener("dragleave", () => li.classList.remove("drop-target"));
    li.addEventListener("drop", (e) => {
      e.preventDefault();
      li.classList.remove("drop-target");
      const from = Number(e.dataTransfer.getData("text/plain"));
      if (Number.isInteger(from)) moveHistory(from, i);
    });
    list.append(li);
  });
}

// ------------------------------------------------------------------ recommendations
async function refreshRecommendations() {
  const seq = ++state.recSeq;
  $("rec-status").textContent = "updating…";
  try {
    const body = JSON.stringify({ history: state.history.map((x) => x.item_id), k: 10, explain: state.history.length > 0 });
    const data = await api("/recommend", { method: "POST", body });
    if (seq !== state.recSeq) return; // a newer request is on its way
    renderRecommendations(data);
    $("rec-status").textContent = `${data.items.length} items · ${data.took_ms.toFixed(1)} ms`;
    showError(null);
  } catch (err) {
    if (seq === state.recSeq) { $("rec-status").textContent = ""; showError(err); }
  }
}

function renderRecommendations(data) {
  $("fallback-note").classList.toggle("hidden", !data.fallback);
  const unknown = $("unknown-note");
  unknown.classList.toggle("hidden", !data.unknown_items.length);
  unknown.textContent = data.unknown_items.length ? `Not in the catalogue (skipped): ${data.unknown_items.join(", ")}` : "";
  const scores = data.items.map((x) => x.score);
  const hi = Math.max(...scores), lo = Math.min(...scores);
  const list = $("recommendations");
  list.replaceChildren();
  for (const item of data.items) {
    const width = hi > lo ? 15 + 85 * (item.score - lo) / (hi - lo) : 100;
    const card = el("li", { class: "rec", "data-testid": "recommendation", "data-item-id": String(item.item_id), tabindex: "0" },
      el("span", { class: "rank", text: `#${item.rank}` }),
      el("span", { class: "item-title", text: titleOf(item), title: titleOf(item) }),
      featureChips(item),
      becauseLine(item),
      el("button", { class: "add", type: "button", "data-testid": "add-recommendation", text: "+ history",
        onclick: (e) => { e.stopPropagation(); addToHistory(item); } }),
      el("span", { class: "score" }, el("span", { class: "bar" }, el("span", { style: `width:${width.toFixed(0)}%` })),
        el("span", { "data-testid": "score", text: item.score.toFixed(3) })));
    if (state.selected != null && sameId(state.selected, item.item_id)) card.classList.add("selected");
    card.addEventListener("click", () => showSimilar(item));
    card.addEventListener("keydown", (e) => { if (e.key === "Enter") showSimilar(item); });
    list.append(card);
  }
}

// "because you liked X, Y": the history items that raised the item's score most (explain: true)
function becauseLine(item) {
  const names = (item.because || []).map((b) => b.title || String(b.item_id));
  if (!names.length) return null;
  const text = `because you liked ${names.join(", ")}`;
  return el("span", { class: "because", "data-testid": "because", text, title: text });
}

// ------------------------------------------------------------------ similar items
function similarity(method, score) {
  if (method === "cooccurrence") return `together ${Math.round(score)}×`;
  return `cosine ${score.toFixed(2)}`;
}

async function showSimilar(item) {
  const seq = ++state.similarSeq;
  state.selected = item.item_id;
  document.querySelectorAll(".rec").forEach((c) => c.classList.toggle("selected", sameId(c.dataset.itemId, item.item_id)));
  $("similar-hint").classList.add("hidden");
  const source = $("similar-source");
  source.classList.remove("hidden");
  source.replaceChildren(el("span", { class: "muted small", text: "Like " }), el("strong", { text: titleOf(item) }));
  try {
    const data = await api(`/items/${encodeURIComponent(item.item_id)}/similar?k=10`);
    if (seq !== state.similarSeq) return;
    const facts = data.item;
    source.replaceChildren(el("span", { class: "muted small", text: "Like " }), el("strong", { text: titleOf(facts) }),
      ...[featureChips(facts)].filter(Boolean),
      el("span", { class: "muted small source-plays", "data-testid": "similar-source-plays",
        text: isNew(facts) ? "no interactions yet" : `${facts.popularity} plays` }));
    const list = $("similar");
    list.replaceChildren();
    for (const s of data.items) {
      list.append(el("li", { "data-testid": "similar-item", "data-item-id": String(s.item_id) },
        itemText(s, `${[yearOf(s), genresOf(s).join(", ")].filter(Boolean).join(" · ") || `id ${s.item_id}`} · ${similarity(data.method, s.score)}`),
        el("button", { class: "add", type: "button", "data-testid": "add-similar", text: "Add", onclick: () => addToHistory(s) })));
    }
    if (!data.items.length) list.append(el("li", { class: "muted small", text: "No similar items found." }));
  } catch (err) { showError(err); }
}

// ------------------------------------------------------------------ search
let searchTimer = null;
function onSearchInput() {
  clearTimeout(searchTimer);
  searchTimer = setTimeout(runSearch, 200);
}

async function runSearch() {
  const query = $("search-input").value.trim();
  const seq = ++state.searchSeq;
  const list = $("search-results");
  if (!query) { list.replaceChildren(); $("search-empty").classList.add("hidden"); return; }
  try {
    const data = await api(`/items?query=${encodeURIComponent(query)}&limit=20`);
    if (seq !== state.searchSeq) return;
    list.replaceChildren();
    $("search-empty").classList.toggle("hidden", data.items.length > 0);
    for (const item of data.items) {
      const meta = [item.year, (item.genres || []).join(", "), isNew(item) ? null : `${item.popularity} plays`].filter(Boolean).join(" · ");
      list.append(el("li", { "data-testid": "search-result", "data-item-id": String(item.item_id) },
        itemText(item, meta),
        el("button", { class: "add", type: "button", "data-testid": "add-item", text: "Add", onclick: () => addToHistory(item) })));
    }
  } catch (err) { showError(err); }
}

// ------------------------------------------------------------------ stored history
async function showStored(event) {
  event.preventDefault();
  const user = $("store-user").value.trim();
  if (!user) return;
  const seq = ++state.storeSeq;
  const list = $("store-events");
  try {
    const data = await api(`/users/${encodeURIComponent(user)}/history?limit=20`);
    if (seq !== state.storeSeq) return;
    state.stored = data.items;
    list.replaceChildren();
    $("store-note").textContent = `${data.store_events} stored event${data.store_events === 1 ? "" : "s"} after ` +
      `${data.training_items} training item${data.training_items === 1 ? "" : "s"}; the latest first.`;
    for (const item of [...data.items].reverse()) {
      const when = item.ts == null ? "training" : new Date(item.ts * 1000).toLocaleString();
      list.append(el("li", { "data-testid": "store-event", "data-item-id": String(item.item_id), "data-source": item.source },
        itemText(item, item.known ? when : `${when} · not known to the model`)));
    }
    $("store-use").classList.toggle("hidden", !data.items.some((x) => x.known));
  } catch (err) {
    if (seq !== state.storeSeq) return;
    state.stored = [];
    list.replaceChildren();
    $("store-use").classList.add("hidden");
    $("store-note").textContent = err.message.startsWith("404") ? `No history for user ${user}.` : err.message;
  }
}

function useStored() {
  state.history = state.stored.filter((x) => x.known).map((x) => ({ item_id: x.item_id, title: x.title, genres: [] }));
  historyChanged();
}

// ------------------------------------------------------------------ model facts
async function loadModel() {
  try {
    const m = await api("/model");
    $("model-badge").textContent = `${m.name} · ${m.scorer}`;
    const pct = (v) => (typeof v === "number" ? v.toFixed(4) : null);
    const num = (v) => (typeof v === "number" ? v.toLocaleString() : null);
    const mc = (m.config && typeof m.config.model === "object" && m.config.model) || m.config || {};
    const test = (m.metrics && typeof m.metrics.test === "object" && m.metrics.test) || m.metrics || {};
    const facts = [
      ["Model", m.name], ["Scorer", m.scorer], ["Backend", m.backend], ["Data", m.data_name],
      ["Items", num(m.n_items)], ["Users", num(m.data.users)], ["Interactions", num(m.data.interactions)],
      ["History read", m.max_len != null ? `last ${m.max_len} item${m.max_len === 1 ? "" : "s"}` : null],
      ["Hidden size", mc.hidden], ["Blocks", mc.blocks], ["Heads", mc.heads],
      ["Test HR@10", pct(test["HR@10"])], ["Test NDCG@10", pct(test["NDCG@10"])],
    ];
    const dl = $("model-facts");
    dl.replaceChildren();
    for (const [k, v] of facts) {
      if (v == null || v === "") continue;
      dl.append(el("dt", { text: k }), el("dd", { text: String(v), "data-testid": `fact-${k.toLowerCase().replace(/[^a-z0-9]+/g, "-")}` }));
    }
  } catch (err) { showError(err); }
}

function init() {
  $("search-input").addEventListener("input", onSearchInput);
  $("clear-history").addEventListener("click", () => { state.history = []; historyChanged(); });
  $("store-form").addEventListener("submit", showStored);
  $("store-use").addEventListener("click", useStored);
  loadHistory();
  renderHistory();
  loadModel();
  refreshRecommendations();
}

document.addEventListener("DOMContentLoaded", init);
