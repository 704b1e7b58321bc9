'use strict';
// tidemark live dashboard.
// Loads the tables once from the JSON API, renders them with uPlot and HTML tables,
// then applies the live changes of /api/changes (Server-Sent Events) in place.

/* ---------- configuration ---------- */

// Key columns of each table: a row is identified by these values.
const KEYS = {
  kpis: ['metric'],
  window_activity: ['window_start'],
  spike_alerts: ['window_start'],
  daily_active: ['day'],
  monthly_active: ['month'],
  retention_cohorts: ['cohort_month', 'months_since'],
  session_metrics_daily: ['day'],
  event_mix_daily: ['day', 'event_type'],
  skip_rate_daily: ['day'],
  feature_adoption: ['day', 'event_type'],
  engagement_by_segment: ['month', 'country', 'plan'],
  engagement_by_dimension: ['day', 'dimension', 'member'],
  quarantine: ['file', 'row'],
};

// Tables loaded whole at start-up (engagement_by_dimension is loaded per dimension).
const WHOLE_TABLES = Object.keys(KEYS).filter((t) => t !== 'engagement_by_dimension');

// Which parts of the page depend on which table.
const RENDERERS = {
  kpis: ['kpis'],
  window_activity: ['windows', 'dateBounds'],
  spike_alerts: ['windows'],
  daily_active: ['daily', 'dateBounds'],
  session_metrics_daily: ['daily'],
  monthly_active: ['monthly'],
  retention_cohorts: ['retention'],
  event_mix_daily: ['mix'],
  skip_rate_daily: ['skip'],
  feature_adoption: ['adoption'],
  engagement_by_segment: ['segmentFilters', 'segments'],
  engagement_by_dimension: ['hours', 'genres', 'artists'],
  quarantine: ['quarantine'],
};

const KPI_FORMAT = {
  active_customers: 'count',
  total_customers: 'count',
  session_adoption_rate_pct: 'pct',
  engaged_users_pct: 'pct',
  paid_share_pct: 'pct',
};
const KPI_LABEL = {
  active_customers: 'Active customers',
  total_customers: 'Total customers',
  session_adoption_rate_pct: 'Session adoption',
  engaged_users_pct: 'Engaged share',
  paid_share_pct: 'Paid share',
};

const PALETTE = ['#2f6fdf', '#f28e2b', '#59a14f', '#b07aa1', '#e15759', '#76b7b2',
  '#edc948', '#9c755f', '#ff9da7', '#4e5d6c', '#8cd17d', '#bab0ac'];
const STATUS_POLL_MS = 3000;
const RETRY_MS = 3000;
const CORRECTION_TTL_MS = 30000;
const MAX_CORRECTIONS = 8;
const ARTIST_DAYS = 14;
const TOP_GENRES = 6;
const TOP_ARTISTS = 8;
const DAY_S = 86400;

/* ---------- state ---------- */

const state = {
  tables: {},          // table name -> Map(key -> row)
  snapshotTime: {},    // table name -> logical time of the loaded snapshot
  available: new Set(), // tables the server lists
  loaded: false,       // first full load finished
  loading: false,
  pending: [],         // change messages received while loading
  dirty: new Set(),    // renderer names waiting to run
  renderTimer: null,
  charts: {},          // element id -> { u, sig }
  windowCache: null,   // sorted columns of window_activity
  filters: { from: '', to: '', month: '', country: '', plan: '' },
  sort: { col: 'active_users', desc: true },
  artistsLoaded: null, // { from, to } range of artist rows held, to = null means open-ended
  lastChangeTime: null, // logical time of the newest change message
  resetZoom: false,    // the next chart updates drop the user's zoom
  sse: null,
  sseOpen: false,
  sseLost: false,      // the stream dropped after being open: resync on reopen
  sseEverOpen: false,
  status: null,        // last /api/status answer
  statusAt: 0,
  eventsPerSec: null,
  apiDown: false,
  loadError: null,
};

/* ---------- formatting ---------- */

const numFmt = new Intl.NumberFormat('en-US', { maximumFractionDigits: 0 });
const dec1Fmt = new Intl.NumberFormat('en-US', { minimumFractionDigits: 1, maximumFractionDigits: 1 });
const compactFmt = new Intl.NumberFormat('en-US', { notation: 'compact', maximumFractionDigits: 1 });
const dayFmt = new Intl.DateTimeFormat('en-GB', { day: 'numeric', month: 'short', year: 'numeric', timeZone: 'UTC' });
const shortDayFmt = new Intl.DateTimeFormat('en-GB', { day: 'numeric', month: 'short', timeZone: 'UTC' });
const monthFmt = new Intl.DateTimeFormat('en-GB', { month: 'short', year: 'numeric', timeZone: 'UTC' });
const clockFmt = new Intl.DateTimeFormat('en-GB', { hour: '2-digit', minute: '2-digit', hour12: false, timeZone: 'UTC' });
const secondsFmt = new Intl.DateTimeFormat('en-GB', { hour: '2-digit', minute: '2-digit', second: '2-digit', hour12: false, timeZone: 'UTC' });

const fmtCount = (v) => (v == null || Number.isNaN(v) ? '—' : numFmt.format(v));
const fmtPct = (v) => (v == null || Number.isNaN(v) ? '—' : `${dec1Fmt.format(v)}%`);
const fmtRatioPct = (v) => (v == null || Number.isNaN(v) ? '—' : `${dec1Fmt.format(v * 100)}%`);
const fmtAxisCount = (v) => (Math.abs(v) >= 10000 ? compactFmt.format(v) : numFmt.format(v));
const fmtDay = (ts) => dayFmt.format(new Date(ts * 1000));
const fmtMonth = (ts) => monthFmt.format(new Date(ts * 1000));
const fmtWindow = (ts) => `${shortDayFmt.format(new Date(ts * 1000))} ${clockFmt.format(new Date(ts * 1000))}`;
const fmtKpi = (metric, v) => (KPI_FORMAT[metric] === 'pct' ? fmtPct(v) : fmtCount(v));

// Parses a date ("2025-01-02") or an RFC 3339 instant into epoch seconds (UTC).
function toEpoch(s) {
  return Date.parse(s.length === 10 ? `${s}T00:00:00Z` : s) / 1000;
}

function fmtInstant(s) {
  if (!s) return '—';
  const d = new Date(s);
  return `${dayFmt.format(d)}, ${secondsFmt.format(d)} UTC`;
}

function labelOf(v) {
  return v == null ? 'Unknown' : String(v);
}

/* ---------- DOM helpers ---------- */

const $ = (id) => document.getElementById(id);

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === 'class') node.className = v;
    else if (k === 'text') node.textContent = v;
    else if (k === 'style') node.style.cssText = v;
    else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c);
  return node;
}

function emptyNote(text) {
  return el('div', { class: 'empty-note', text });
}

/* ---------- API ---------- */

async function getJSON(path) {
  const res = await fetch(path, { cache: 'no-store' });
  if (!res.ok) {
    let detail = '';
    try { detail = (await res.json()).error || ''; } catch { /* not JSON */ }
    throw new Error(`${path}: HTTP ${res.status} ${detail}`.trim());
  }
  return res.json();
}

function tableUrl(name, params = {}) {
  const q = new URLSearchParams(params).toString();
  return `/api/tables/${encodeURIComponent(name)}${q ? `?${q}` : ''}`;
}

/* ---------- in-memory tables ---------- */

function rowKey(table, row) {
  return KEYS[table].map((k) => (row[k] === null ? '\u0000' : row[k])).join('\u0001');
}

function toMap(table, rows) {
  const map = new Map();
  for (const row of rows) map.set(rowKey(table, row), row);
  return map;
}

function rowsOf(table) {
  const map = state.tables[table];
  return map ? Array.from(map.values()) : [];
}

// True when the stored row holds the same values as the retracted one.
function sameRow(stored, retracted) {
  for (const k of Object.keys(retracted)) {
    if (k !== 'diff' && stored[k] !== retracted[k]) return false;
  }
  return true;
}

/* ---------- loading ---------- */

// Loads every table the page shows; resolves to { tables, times, available }.
async function fetchSnapshot() {
  const list = await getJSON('/api/tables');
  const known = new Map(list.map((t) => [t.name, t]));
  const tables = {};
  const times = {};
  const load = async (name, params) => {
    if (!known.has(name)) return [];
    times[name] = known.get(name).time;
    return getJSON(tableUrl(name, params));
  };
  const whole = WHOLE_TABLES.map(async (name) => { tables[name] = toMap(name, await load(name)); });
  const dims = Promise.all([
    load('engagement_by_dimension', { dimension: 'genre' }),
    load('engagement_by_dimension', { dimension: 'hour_of_day' }),
  ]).then((parts) => { tables.engagement_by_dimension = toMap('engagement_by_dimension', parts.flat()); });
  await Promise.all([...whole, dims]);
  return { tables, times, available: new Set(known.keys()) };
}

// (Re)loads everything, then replays the changes that arrived meanwhile.
async function loadAll() {
  state.loading = true;
  try {
    const snap = await fetchSnapshot();
    state.tables = snap.tables;
    state.snapshotTime = snap.times;
    state.available = snap.available;
    state.windowCache = null;
    state.artistsLoaded = null;
    await ensureArtists();
    state.loaded = true;
    state.loadError = null;
  } finally {
    state.loading = false;
  }
  const pending = state.pending.splice(0);
  for (const msg of pending) applyChange(msg, true);
  renderAll();
  document.body.dataset.ready = '1';
  updateStatusLine();
}

async function loadWithRetry() {
  try {
    await loadAll();
  } catch (err) {
    console.warn('tidemark: load failed, retrying', err);
    state.loadError = err.message;
    updateStatusLine();
    setTimeout(loadWithRetry, RETRY_MS);
  }
}

// Last day with data (YYYY-MM-DD), from the daily tables or the windows.
function lastDataDay() {
  let last = '';
  for (const r of rowsOf('daily_active')) if (r.day > last) last = r.day;
  for (const r of rowsOf('event_mix_daily')) if (r.day > last) last = r.day;
  return last || null;
}

function addDays(day, n) {
  return new Date((toEpoch(day) + n * DAY_S) * 1000).toISOString().slice(0, 10);
}

// Artist range: the last ARTIST_DAYS days of the selected range.
function artistRange() {
  const last = lastDataDay();
  if (!last) return null;
  const to = state.filters.to && state.filters.to < last ? state.filters.to : last;
  let from = addDays(to, -(ARTIST_DAYS - 1));
  if (state.filters.from && state.filters.from > from) from = state.filters.from;
  return { from, to, open: to === last };
}

// Fetches artist rows when the wanted range is not already held.
async function ensureArtists() {
  const want = artistRange();
  const held = state.artistsLoaded;
  if (!want || !state.available.has('engagement_by_dimension')) return false;
  if (held && want.from >= held.from && (held.to === null || want.to <= held.to)) return false;
  const params = { dimension: 'artist', from: want.from };
  if (!want.open) params.to = addDays(want.to, 1);
  const rows = await getJSON(tableUrl('engagement_by_dimension', params));
  const map = state.tables.engagement_by_dimension;
  for (const [k, r] of map) if (r.dimension === 'artist') map.delete(k);
  for (const r of rows) map.set(rowKey('engagement_by_dimension', r), r);
  state.artistsLoaded = { from: want.from, to: want.open ? null : want.to };
  return true;
}

/* ---------- live changes ---------- */

function connectChanges() {
  const es = new EventSource('/api/changes');
  state.sse = es;
  es.addEventListener('open', onStreamOpen);
  es.addEventListener('change', (e) => onChangeMessage(e.data));
  es.addEventListener('message', (e) => onChangeMessage(e.data));
  es.addEventListener('error', () => onStreamError(es));
}

function onStreamOpen() {
  state.sseOpen = true;
  state.sseEverOpen = true;
  if (state.sseLost && state.loaded && !state.loading) {
    // Messages may have been missed while disconnected: reload quietly.
    state.sseLost = false;
    loadWithRetry();
  }
  updateStatusLine();
}

function onStreamError(es) {
  if (state.sseOpen) state.sseLost = true;
  state.sseOpen = false;
  if (es.readyState === EventSource.CLOSED) {
    // The browser gave up (e.g. HTTP error): reconnect ourselves.
    state.sseLost = true;
    setTimeout(() => { if (state.sse === es) connectChanges(); }, RETRY_MS);
  }
  updateStatusLine();
}

function onChangeMessage(data) {
  let msg;
  try { msg = JSON.parse(data); } catch { return; }
  if (!msg || typeof msg.tables !== 'object') return;
  if (!state.loaded || state.loading) state.pending.push(msg);
  else applyChange(msg, false);
  if (msg.time != null && (state.lastChangeTime == null || msg.time > state.lastChangeTime)) {
    state.lastChangeTime = msg.time;
    updateStatusLine();
  }
}

// Applies one change message to the in-memory tables and notes corrected values.
// A replayed message (received while loading) may already be part of the snapshot:
// its retractions then only remove rows holding exactly the retracted values.
function applyChange(msg, replay) {
  for (const [table, changes] of Object.entries(msg.tables)) {
    const map = state.tables[table];
    if (!map || !KEYS[table] || !Array.isArray(changes)) continue;
    const snap = state.snapshotTime[table];
    if (snap != null && msg.time != null && msg.time <= snap) continue; // already in the snapshot
    const retracted = new Map();
    for (const c of changes) {
      if (!(c.diff < 0)) continue;
      const key = rowKey(table, c);
      const cur = map.get(key);
      if (cur && (!replay || sameRow(cur, c))) {
        map.delete(key);
        retracted.set(key, cur);
      }
    }
    for (const c of changes) {
      if (!(c.diff > 0)) continue;
      const { diff, ...row } = c;
      const key = rowKey(table, row);
      map.set(key, row);
      const old = retracted.get(key);
      if (old) noteCorrection(table, old, row);
    }
    if (table === 'window_activity' || table === 'spike_alerts') state.windowCache = null;
    for (const r of RENDERERS[table] || []) state.dirty.add(r);
  }
  scheduleRender();
}

/* ---------- corrections ---------- */

// End (epoch seconds) of the period a row describes, or null for KPIs.
function periodEnd(table, row) {
  if (table === 'window_activity') return toEpoch(row.window_end || row.window_start) + (row.window_end ? 0 : 300);
  if (table === 'daily_active') return toEpoch(row.day) + DAY_S;
  if (table === 'monthly_active') {
    const d = new Date(toEpoch(row.month) * 1000);
    return Date.UTC(d.getUTCFullYear(), d.getUTCMonth() + 1, 1) / 1000;
  }
  return null;
}

// Why a value changed: a late event when the watermark had already closed its period.
function correctionReason(table, row) {
  const end = periodEnd(table, row);
  const wm = state.status && state.status.watermark;
  if (end == null || !wm || Date.parse(wm) / 1000 >= end) return 'corrected by a late event';
  const period = { window_activity: 'window', daily_active: 'day', monthly_active: 'month' }[table];
  return `updated, ${period} still open`;
}

// Text for a changed, already displayed value; null when nothing shown changed.
function describeCorrection(table, old, row) {
  const why = correctionReason(table, row);
  const change = (a, b) => `${fmtCount(a)} → ${fmtCount(b)}`;
  if (table === 'window_activity') {
    const when = `${fmtWindow(toEpoch(row.window_start))} window`;
    if (old.sessions_started !== row.sessions_started) return `${when}: ${change(old.sessions_started, row.sessions_started)} sessions, ${why}`;
    if (old.active_users !== row.active_users) return `${when}: ${change(old.active_users, row.active_users)} active users, ${why}`;
    if (old.events !== row.events) return `${when}: ${change(old.events, row.events)} events, ${why}`;
    return null;
  }
  if (table === 'kpis' && old.value !== row.value) {
    const label = KPI_LABEL[row.metric] || row.metric;
    return `${label}: ${fmtKpi(row.metric, old.value)} → ${fmtKpi(row.metric, row.value)}, ${why}`;
  }
  if (table === 'daily_active' && old.dau !== row.dau) return `DAU ${fmtDay(toEpoch(row.day))}: ${change(old.dau, row.dau)}, ${why}`;
  if (table === 'monthly_active' && old.mau !== row.mau) return `MAU ${fmtMonth(toEpoch(row.month))}: ${change(old.mau, row.mau)}, ${why}`;
  return null;
}

function noteCorrection(table, old, row) {
  const text = describeCorrection(table, old, row);
  if (!text) return;
  addCorrectionEntry(`${table}\u0001${rowKey(table, row)}`, text);
  if (table === 'kpis') flagKpi(row.metric);
}

// Lists a correction for ~30 s; a newer one for the same row replaces the older entry.
function addCorrectionEntry(key, text) {
  const list = $('correction-list');
  for (const li of list.children) if (li._key === key) { clearTimeout(li._timer); li.remove(); break; }
  const item = el('li', { class: 'corrected' },
    el('time', { text: `${secondsFmt.format(new Date())} UTC` }), ' ', el('span', { class: 'note', text }));
  item._key = key;
  list.prepend(item);
  while (list.children.length > MAX_CORRECTIONS) list.lastElementChild.remove();
  updateCorrectionsBox();
  item._timer = setTimeout(() => { item.remove(); updateCorrectionsBox(); }, CORRECTION_TTL_MS);
}

function updateCorrectionsBox() {
  const has = $('correction-list').children.length > 0;
  $('corrections').classList.toggle('has-entries', has);
  $('corrections-empty').hidden = has;
}

function flagKpi(metric) {
  const card = document.querySelector(`.kpi[data-metric="${metric}"]`);
  if (!card) return;
  card.classList.remove('corrected');
  void card.offsetWidth; // restart the highlight animation
  card.classList.add('corrected');
  clearTimeout(card._correctedTimer);
  card._correctedTimer = setTimeout(() => card.classList.remove('corrected'), CORRECTION_TTL_MS);
}

/* ---------- status line ---------- */

async function pollStatus() {
  try {
    const s = await getJSON('/api/status');
    const now = performance.now();
    if (state.status && state.statusAt && s.events != null && state.status.events != null) {
      const dt = (now - state.statusAt) / 1000;
      if (dt > 0.5) state.eventsPerSec = Math.max(0, (s.events - state.status.events) / dt);
    }
    const wmDay = (st) => (st && st.watermark ? st.watermark.slice(0, 10) : null);
    if (state.loaded && wmDay(s) !== wmDay(state.status)) { state.dirty.add('daily'); scheduleRender(); }
    state.status = s;
    state.statusAt = now;
    state.apiDown = false;
  } catch (err) {
    state.apiDown = true;
  }
  updateStatusLine();
  setTimeout(pollStatus, STATUS_POLL_MS);
}

// Picks the indicator: live, finished, reconnecting or offline.
function connectionState() {
  if (state.apiDown || (!state.status && state.loadError)) return 'offline';
  if (state.status && state.status.running === false) return 'finished';
  return state.sseOpen ? 'live' : 'reconnecting';
}

function updateStatusLine() {
  const line = $('status');
  const mode = connectionState();
  line.className = `status ${mode}`;
  if (mode === 'offline') {
    line.textContent = `API unreachable, retrying every ${RETRY_MS / 1000} s`;
    return;
  }
  const s = state.status || {};
  const waiting = state.sseEverOpen ? 'Reconnecting…' : 'Connecting…';
  const label = { live: 'Live', finished: 'Finished', reconnecting: waiting }[mode];
  const times = [s.time, state.lastChangeTime].filter((t) => t != null);
  const parts = [label, `logical time ${times.length ? Math.max(...times) : '—'}`];
  if (mode !== 'finished') {
    parts.push(`${state.eventsPerSec == null ? '—' : fmtCount(state.eventsPerSec)} events/s`);
  }
  parts.push(`${fmtCount(s.events)} events`, `watermark ${fmtInstant(s.watermark)}`);
  if (!state.loaded) parts.push(state.loadError ? 'loading failed, retrying' : 'loading…');
  // The server's own word: an output that cannot be read, or none there yet.
  if (s.error) parts.push(`cannot read the output: ${s.error}`);
  else if (s.message) parts.push(s.message);
  line.textContent = parts.join(' · ');
}

/* ---------- rendering ---------- */

const RENDER = {
  kpis: renderKpis,
  windows: renderWindows,
  dateBounds: renderDateBounds,
  daily: renderDaily,
  monthly: renderMonthly,
  retention: renderRetention,
  mix: renderEventMix,
  skip: renderSkipRate,
  adoption: renderAdoption,
  segmentFilters: renderSegmentFilters,
  segments: renderSegments,
  hours: renderHours,
  genres: renderGenres,
  artists: renderArtists,
  quarantine: renderQuarantine,
};

function renderAll() {
  for (const name of Object.keys(RENDER)) state.dirty.add(name);
  flushRender();
}

// Coalesces bursts of changes into one render.
function scheduleRender() {
  if (state.renderTimer) return;
  state.renderTimer = setTimeout(flushRender, 150);
}

function flushRender() {
  clearTimeout(state.renderTimer);
  state.renderTimer = null;
  const names = Array.from(state.dirty);
  state.dirty.clear();
  for (const name of names) {
    try { RENDER[name](); } catch (err) { console.error(`tidemark: render ${name} failed`, err); }
  }
}

/* ---------- time slicer ---------- */

// Selected range as epoch seconds [from, to), to exclusive (end of the "to" day).
function rangeEpoch() {
  const f = state.filters;
  return {
    from: f.from ? toEpoch(f.from) : -Infinity,
    to: f.to ? toEpoch(f.to) + DAY_S : Infinity,
  };
}

function dayInRange(day) {
  const f = state.filters;
  return (!f.from || day >= f.from) && (!f.to || day <= f.to);
}

function monthInRange(month) {
  const f = state.filters;
  const m = month.slice(0, 7);
  return (!f.from || m >= f.from.slice(0, 7)) && (!f.to || m <= f.to.slice(0, 7));
}

function rangeLabel() {
  return state.filters.from || state.filters.to ? 'No data in the selected range' : 'No data yet';
}

/* ---------- charts ---------- */

const AXIS = {
  stroke: '#667085',
  font: '11px system-ui, sans-serif',
  grid: { stroke: '#eef1f5', width: 1 },
  ticks: { stroke: '#dde2e9', width: 1, size: 4 },
};

// uPlot series options; legend values read the chart's current spec (see setChart).
function seriesOptions(s) {
  const o = {
    label: s.label,
    stroke: s.color,
    width: s.width ?? 1.5,
    scale: s.scale || 'y',
    spanGaps: false,
    value: (u, v, si, i) => legendValue(u, u.tmSpec.series[si - 1] || s, si, i),
    points: { show: false },
  };
  if (s.points) o.points = { show: true, size: 7, width: 1, stroke: s.color, fill: '#fff' };
  if (s.fill) o.fill = s.fill;
  if (s.bars) {
    o.paths = uPlot.paths.bars({ size: [s.barSize || 0.7, 48], gap: 1 });
    o.fill = s.fill || s.color;
    o.width = 0;
  }
  if (s.dots) {
    o.paths = () => null;
    o.points = { show: true, size: 5, width: 1, stroke: s.color, fill: s.color };
  }
  return o;
}

// Index the legend shows: the hovered point, else the latest one (time charts only).
function legendIndex(u, i) {
  if (i != null) return i;
  return u.tmSpec.categorical || u.data[0].length === 0 ? null : u.data[0].length - 1;
}

function legendValue(u, s, si, i) {
  const idx = legendIndex(u, i);
  if (idx == null) return '—';
  const v = s.valueAt ? s.valueAt(idx) : u.data[si][idx];
  return v == null ? '—' : (s.fmt || fmtCount)(v);
}

// Label of category index v in a categorical chart (x = 0, 1, 2, ...).
function categoryLabel(u, v) {
  const labels = u.tmSpec.labels || [];
  return Number.isInteger(v) && v >= 0 && v < labels.length ? labels[v] : '';
}

function xAxisOptions(spec) {
  if (!spec.categorical) return { ...AXIS };
  return {
    ...AXIS,
    splits: (u) => (u.tmSpec.labels || []).map((_, i) => i),
    values: (u, vs) => vs.map((v) => categoryLabel(u, v)),
  };
}

function xLegendValue(spec) {
  if (spec.categorical) return (u, v) => (v == null ? '—' : (spec.xFmt || String)(categoryLabel(u, v)));
  return (u, v, si, i) => {
    const idx = legendIndex(u, i);
    return idx == null ? '—' : (spec.xFmt || fmtDay)(u.data[0][idx]);
  };
}

function chartOptions(spec, width) {
  const axes = [
    xAxisOptions(spec),
    { ...AXIS, size: 58, values: (u, vs) => vs.map(spec.yFmt || fmtAxisCount) },
  ];
  const x = spec.categorical ? { time: false, range: (u) => [-0.5, u.data[0].length - 0.5] } : { time: true };
  // y starts at zero unless the data goes below it.
  const fromZero = (u, min, max) => uPlot.rangeNum(Math.min(0, min), max > 0 ? max : 1, 0.1, true);
  const scales = { x, y: { range: spec.yRange || fromZero } };
  if (spec.y2) {
    axes.push({ ...AXIS, scale: 'y2', side: 1, size: 52, grid: { show: false }, values: (u, vs) => vs.map(spec.y2.fmt) });
    scales.y2 = spec.y2.range ? { range: spec.y2.range } : {};
  }
  return {
    width: Math.max(240, width),
    height: spec.height || 230,
    tzDate: (ts) => uPlot.tzDate(new Date(ts * 1000), 'Etc/UTC'),
    scales,
    axes,
    series: [{ label: spec.xLabel || 'Day', value: xLegendValue(spec) },
      ...spec.series.map(seriesOptions)],
    legend: { live: true },
    cursor: { drag: { x: !spec.categorical, y: false }, points: { size: 6 } },
    padding: [10, 6, 0, 2],
  };
}

// Draws or updates the chart in element `id`; data = [xs, ...ys].
function setChart(id, spec, data) {
  const box = $(id);
  const n = data[0] ? data[0].length : 0;
  box.dataset.points = String(n);
  box.classList.toggle('empty', n === 0);
  let chart = state.charts[id];
  if (n === 0) {
    box.querySelector('.empty-note').textContent = spec.emptyText || rangeLabel();
    if (chart) { chart.u.destroy(); delete state.charts[id]; }
    return;
  }
  const sig = spec.series.map((s) => s.label).join('\u0001');
  if (chart && chart.sig !== sig) { chart.u.destroy(); chart = null; }
  if (chart) {
    chart.u.tmSpec = spec;
    updateChartData(chart.u, data);
    return;
  }
  const u = new uPlot(chartOptions(spec, box.clientWidth), data, box);
  u.tmSpec = spec;
  state.charts[id] = { u, sig };
}

// Replaces a chart's data, keeping the user's zoom unless the time range changed.
function updateChartData(u, data) {
  const x = u.scales.x;
  const xs = u.data[0];
  const zoomed = !state.resetZoom && xs.length > 1 && x.min != null
    && (x.min > xs[0] || x.max < xs[xs.length - 1]);
  const keep = zoomed ? { min: x.min, max: x.max } : null;
  u.setData(data);
  if (keep) u.setScale('x', keep);
}

function resizeCharts() {
  for (const [id, chart] of Object.entries(state.charts)) {
    const w = Math.max(240, $(id).clientWidth);
    if (Math.abs(chart.u.width - w) > 1) chart.u.setSize({ width: w, height: chart.u.height });
  }
}

// Groups rows into a day-by-member matrix: { xs, members, values[member][dayIndex] }.
function pivotByDay(rows, memberCol, valueCol) {
  const days = Array.from(new Set(rows.map((r) => r.day))).sort();
  const dayIdx = new Map(days.map((d, i) => [d, i]));
  const values = new Map();
  for (const r of rows) {
    const m = labelOf(r[memberCol]);
    if (!values.has(m)) values.set(m, new Array(days.length).fill(null));
    values.get(m)[dayIdx.get(r.day)] = r[valueCol];
  }
  return { xs: days.map(toEpoch), members: Array.from(values.keys()), values };
}

// Members sorted by their total of `valueCol`, largest first.
function rankMembers(rows, memberCol, valueCol) {
  const totals = new Map();
  for (const r of rows) {
    const m = labelOf(r[memberCol]);
    totals.set(m, (totals.get(m) || 0) + (r[valueCol] || 0));
  }
  return Array.from(totals.entries()).sort((a, b) => b[1] - a[1]).map(([m]) => m);
}

/* ---------- KPI cards ---------- */

function renderKpis() {
  const byMetric = new Map(rowsOf('kpis').map((r) => [r.metric, r.value]));
  for (const card of document.querySelectorAll('.kpi[data-metric]')) {
    const metric = card.dataset.metric;
    const v = byMetric.get(metric);
    card.querySelector('.kpi-value').textContent = v == null ? '—' : fmtKpi(metric, v);
    if (v == null) delete card.dataset.value;
    else card.dataset.value = String(v);
    card.title = v == null ? 'no data yet' : `${KPI_LABEL[metric]}: ${v}`;
  }
}

/* ---------- 5-minute windows ---------- */

// Sorted columns of window_activity with spike flags, rebuilt only after changes.
function windowColumns() {
  if (state.windowCache) return state.windowCache;
  const spikes = new Set();
  for (const r of rowsOf('spike_alerts')) if (r.spike) spikes.add(r.window_start);
  const rows = rowsOf('window_activity');
  for (const r of rows) if (r._t === undefined) r._t = toEpoch(r.window_start);
  rows.sort((a, b) => a._t - b._t);
  const n = rows.length;
  const cols = { xs: new Float64Array(n), sessions: new Array(n), users: new Array(n), spike: new Array(n), spikeCount: 0 };
  rows.forEach((r, i) => {
    cols.xs[i] = r._t;
    cols.sessions[i] = r.sessions_started;
    cols.users[i] = r.active_users;
    const isSpike = spikes.has(r.window_start);
    cols.spike[i] = isSpike ? r.sessions_started : null;
    if (isSpike) cols.spikeCount += 1;
  });
  state.windowCache = cols;
  return cols;
}

// First index i with xs[i] >= t.
function lowerBound(xs, t) {
  let lo = 0;
  let hi = xs.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (xs[mid] < t) lo = mid + 1; else hi = mid;
  }
  return lo;
}

function renderWindows() {
  const c = windowColumns();
  const r = rangeEpoch();
  const a = lowerBound(c.xs, r.from);
  const b = lowerBound(c.xs, r.to);
  const xs = Array.from(c.xs.subarray(a, b));
  const spikes = c.spike.slice(a, b);
  const spikeCount = spikes.reduce((n, v) => n + (v == null ? 0 : 1), 0);
  setChart('chart-windows', {
    height: 280,
    xLabel: 'Window',
    xFmt: fmtWindow,
    series: [
      { label: 'Active users', color: '#8cc47e', width: 1 },
      { label: 'Sessions started', color: '#2f6fdf', width: 1 },
      { label: 'Spike', color: '#d64545', dots: true },
    ],
  }, [xs, c.users.slice(a, b), c.sessions.slice(a, b), spikes]);
  $('windows-sub').textContent = `${fmtCount(xs.length)} windows, ${fmtCount(spikeCount)} spike windows (red dots). `
    + 'Drag across the chart to zoom, double-click to reset.';
}

/* ---------- daily and monthly activity ---------- */

function renderDaily() {
  const dau = rowsOf('daily_active').filter((r) => dayInRange(r.day));
  const sessions = new Map(rowsOf('session_metrics_daily').map((r) => [r.day, r.sessions]));
  dau.sort((x, y) => (x.day < y.day ? -1 : 1));
  setChart('chart-daily', {
    series: [
      { label: 'Daily active users', color: '#2f6fdf', width: 2, fill: 'rgba(47,111,223,0.08)' },
      { label: 'Sessions', color: '#f28e2b' },
    ],
  }, [dau.map((r) => toEpoch(r.day)), dau.map((r) => r.dau), dau.map((r) => sessions.get(r.day) ?? null)]);
  const last = dau.length ? dau[dau.length - 1].day : null;
  $('daily-sub').textContent = 'Distinct active users and sessions started per day.'
    + (last && isDayInProgress(last) ? ` ${fmtDay(toEpoch(last))} is still in progress.` : '');
}

// True when the watermark has not yet passed the end of `day`.
function isDayInProgress(day) {
  const wm = state.status && state.status.watermark;
  return Boolean(wm) && state.status.running !== false && Date.parse(wm) / 1000 < toEpoch(day) + DAY_S;
}

function renderMonthly() {
  const rows = rowsOf('monthly_active').filter((r) => monthInRange(r.month));
  rows.sort((x, y) => (x.month < y.month ? -1 : 1));
  setChart('chart-monthly', {
    categorical: true,
    labels: rows.map((r) => fmtMonth(toEpoch(r.month))),
    xLabel: 'Month',
    y2: { fmt: fmtRatioPct, range: [0, 1] },
    series: [
      { label: 'MAU', color: '#2f6fdf', bars: true, fill: 'rgba(47,111,223,0.55)' },
      { label: 'Average DAU', color: '#f28e2b', bars: true, barSize: 0.35, fill: 'rgba(242,142,43,0.85)' },
      { label: 'Stickiness', color: '#d64545', scale: 'y2', width: 2, fmt: fmtRatioPct, points: true },
    ],
  }, [rows.map((_, i) => i), rows.map((r) => r.mau), rows.map((r) => r.avg_dau), rows.map((r) => r.stickiness)]);
}

/* ---------- retention heat map ---------- */

// Blends from a light to a dark blue by retention (0..1).
function heatColour(v) {
  const t = Math.max(0, Math.min(1, v));
  const mix = (a, b) => Math.round(a + (b - a) * t);
  return `rgb(${mix(239, 29)}, ${mix(244, 78)}, ${mix(251, 137)})`;
}

function renderRetention() {
  const box = $('retention');
  const rows = rowsOf('retention_cohorts');
  box.replaceChildren();
  if (rows.length === 0) { box.append(emptyNote('No data yet')); return; }
  const cohorts = Array.from(new Set(rows.map((r) => r.cohort_month))).sort();
  const maxSince = Math.max(...rows.map((r) => r.months_since));
  const cell = new Map(rows.map((r) => [`${r.cohort_month}|${r.months_since}`, r]));
  const size = new Map();
  for (const r of rows) if (r.months_since === 0 || !size.has(r.cohort_month)) size.set(r.cohort_month, r.cohort_size);
  const head = el('tr', {}, el('th', { text: 'Cohort' }), el('th', { text: 'Users' }));
  for (let m = 0; m <= maxSince; m++) head.append(el('th', { text: `Month ${m}`, style: 'text-align:center' }));
  const body = el('tbody');
  for (const c of cohorts) {
    const tr = el('tr', {}, el('td', { text: fmtMonth(toEpoch(c)) }), el('td', { text: fmtCount(size.get(c)) }));
    for (let m = 0; m <= maxSince; m++) {
      const r = cell.get(`${c}|${m}`);
      if (!r) { tr.append(el('td', { class: 'blank' })); continue; }
      tr.append(el('td', {
        class: `heat${r.retention > 0.5 ? ' dark' : ''}`,
        style: `background:${heatColour(r.retention)}`,
        title: `${fmtMonth(toEpoch(c))} cohort, month ${m}: ${fmtCount(r.active_users)} of ${fmtCount(r.cohort_size)} users`,
        text: fmtRatioPct(r.retention),
      }));
    }
    body.append(tr);
  }
  const legend = el('div', { class: 'legend-scale' }, '0%', el('span', { class: 'ramp' }), '100% retained');
  box.append(el('table', { class: 'data heatmap' }, el('thead', {}, head), body), legend);
}

/* ---------- event mix, skip rate, adoption ---------- */

function renderEventMix() {
  const rows = rowsOf('event_mix_daily').filter((r) => dayInRange(r.day));
  const { xs, values } = pivotByDay(rows, 'event_type', 'events');
  // Stack: the largest type at the bottom; each series holds the running total and
  // is drawn over the previous one, so the visible band is that type's share.
  const order = rankMembers(rows, 'event_type', 'events');
  const cumulative = [];
  let running = xs.map(() => 0);
  for (const m of order) {
    running = running.map((v, i) => v + (values.get(m)[i] || 0));
    cumulative.push(running);
  }
  const series = order.map((m, k) => ({
    label: m,
    color: PALETTE[k % PALETTE.length],
    bars: true,
    fill: PALETTE[k % PALETTE.length],
    valueAt: (i) => values.get(m)[i],
  })).reverse();
  setChart('chart-mix', { series, height: 250 }, [xs, ...cumulative.slice().reverse()]);
}

function renderSkipRate() {
  const rows = rowsOf('skip_rate_daily').filter((r) => dayInRange(r.day));
  rows.sort((x, y) => (x.day < y.day ? -1 : 1));
  setChart('chart-skip', {
    yFmt: (v) => `${dec1Fmt.format(v * 100)}%`,
    series: [{ label: 'Skip rate', color: '#e15759', width: 2, fmt: fmtRatioPct, fill: 'rgba(225,87,89,0.08)' }],
  }, [rows.map((r) => toEpoch(r.day)), rows.map((r) => r.skip_rate)]);
}

function renderAdoption() {
  const rows = rowsOf('feature_adoption').filter((r) => dayInRange(r.day));
  const { xs, values } = pivotByDay(rows, 'event_type', 'adoption_pct');
  const lastDay = rows.reduce((d, r) => (r.day > d ? r.day : d), '');
  const order = rankMembers(rows.filter((r) => r.day === lastDay), 'event_type', 'adoption_pct');
  setChart('chart-adoption', {
    yFmt: (v) => `${numFmt.format(v)}%`,
    yRange: [0, 100],
    series: order.map((m, k) => ({ label: m, color: PALETTE[k % PALETTE.length], fmt: fmtPct })),
  }, [xs, ...order.map((m) => values.get(m))]);
}

/* ---------- engagement by dimension ---------- */

// Rows of one dimension in the selected range; rows without a member are left out.
function dimensionRows(dimension) {
  return rowsOf('engagement_by_dimension')
    .filter((r) => r.dimension === dimension && r.member != null && dayInRange(r.day));
}

function renderHours() {
  const totals = new Array(24).fill(0);
  let any = false;
  for (const r of dimensionRows('hour_of_day')) {
    const h = Number.parseInt(r.member, 10);
    if (h >= 0 && h < 24) { totals[h] += r.events; any = true; }
  }
  const pad = (v) => String(v).padStart(2, '0');
  setChart('chart-hours', {
    categorical: true,
    xLabel: 'Hour (UTC)',
    labels: totals.map((_, h) => pad(h)),
    xFmt: (label) => `${label}:00`,
    series: [{ label: 'Events', color: '#2f6fdf', bars: true, fill: 'rgba(47,111,223,0.7)' }],
  }, any ? [totals.map((_, h) => h), totals] : [[]]);
}

// Line chart of events per day for the top members of a dimension.
function renderTopMembers(id, rows, top) {
  const order = rankMembers(rows, 'member', 'events').slice(0, top);
  const keep = new Set(order);
  const { xs, values } = pivotByDay(rows.filter((r) => keep.has(labelOf(r.member))), 'member', 'events');
  setChart(id, {
    series: order.map((m, k) => ({ label: m, color: PALETTE[k % PALETTE.length] })),
  }, [xs, ...order.map((m) => values.get(m))]);
}

function renderGenres() {
  renderTopMembers('chart-genres', dimensionRows('genre'), TOP_GENRES);
}

function renderArtists() {
  const want = artistRange();
  const rows = want ? rowsOf('engagement_by_dimension').filter((r) => r.dimension === 'artist'
    && r.member != null && r.day >= want.from && r.day <= want.to) : [];
  renderTopMembers('chart-artists', rows, TOP_ARTISTS);
  $('artists-sub').textContent = want
    ? `Events per day for the ${TOP_ARTISTS} leading artists, ${fmtDay(toEpoch(want.from))} – ${fmtDay(toEpoch(want.to))} (last ${ARTIST_DAYS} days of the range).`
    : 'Events per day for the leading artists.';
}

/* ---------- segments ---------- */

// Fills a select with values, keeping the current choice when still present.
function fillSelect(select, values, allLabel) {
  const current = select.value;
  const options = allLabel ? [el('option', { value: '', text: allLabel })] : [];
  for (const { value, text } of values) options.push(el('option', { value, text }));
  select.replaceChildren(...options);
  if (Array.from(select.options).some((o) => o.value === current)) select.value = current;
}

const NULL_VALUE = '__unknown__';
const optionValue = (v) => (v == null ? NULL_VALUE : String(v));

function renderSegmentFilters() {
  const rows = rowsOf('engagement_by_segment');
  const distinct = (col) => Array.from(new Set(rows.map((r) => optionValue(r[col])))).sort();
  const months = distinct('month').reverse();
  fillSelect($('month'), months.map((m) => ({ value: m, text: fmtMonth(toEpoch(m)) })));
  if (!state.filters.month || !months.includes(state.filters.month)) state.filters.month = months[0] || '';
  $('month').value = state.filters.month;
  const opt = (v) => ({ value: v, text: v === NULL_VALUE ? 'Unknown' : v });
  fillSelect($('country'), distinct('country').map(opt), 'All countries');
  fillSelect($('plan'), distinct('plan').map(opt), 'All plans');
  state.filters.country = $('country').value;
  state.filters.plan = $('plan').value;
}

const SEGMENT_COLUMNS = [
  { col: 'country', label: 'Country', text: (r) => labelOf(r.country) },
  { col: 'plan', label: 'Plan', text: (r) => labelOf(r.plan), left: true },
  { col: 'active_users', label: 'Active users', text: (r) => fmtCount(r.active_users), bar: true },
  { col: 'events', label: 'Events', text: (r) => fmtCount(r.events) },
  { col: 'events_per_user', label: 'Events / user', text: (r) => (r.events_per_user == null ? '—' : dec1Fmt.format(r.events_per_user)) },
  { col: 'hours', label: 'Listening hours', text: (r) => fmtCount(r.hours) },
  { col: 'minutes_per_user', label: 'Minutes / user', text: (r) => (r.minutes_per_user == null ? '—' : dec1Fmt.format(r.minutes_per_user)) },
];

function segmentRows() {
  const f = state.filters;
  return rowsOf('engagement_by_segment')
    .filter((r) => r.month === f.month
      && (!f.country || optionValue(r.country) === f.country)
      && (!f.plan || optionValue(r.plan) === f.plan))
    .map((r) => ({
      ...r,
      events_per_user: r.active_users ? r.events / r.active_users : null,
      hours: (r.total_duration_ms || 0) / 3.6e6,
      minutes_per_user: r.active_users ? (r.total_duration_ms || 0) / 6e4 / r.active_users : null,
    }));
}

function compareBy(col, desc) {
  return (a, b) => {
    const x = a[col] ?? '';
    const y = b[col] ?? '';
    const c = typeof x === 'number' && typeof y === 'number' ? x - y : String(x).localeCompare(String(y));
    return desc ? -c : c;
  };
}

function renderSegments() {
  const box = $('segments');
  const rows = segmentRows().sort(compareBy(state.sort.col, state.sort.desc));
  box.replaceChildren();
  $('segments-sub').textContent = state.filters.month
    ? `Country × plan for ${fmtMonth(toEpoch(state.filters.month))}: ${rows.length} segments. Click a column to sort.`
    : 'Country × plan for the selected month. Click a column to sort.';
  if (rows.length === 0) { box.append(emptyNote(state.filters.month ? 'No segments match the filters' : 'No data yet')); return; }
  const maxUsers = Math.max(1, ...rows.map((r) => r.active_users || 0));
  const head = el('tr');
  for (const c of SEGMENT_COLUMNS) {
    const sorted = state.sort.col === c.col ? (state.sort.desc ? ' sorted-desc' : ' sorted-asc') : '';
    const th = el('th', { class: `sortable${sorted}${c.left ? ' left' : ''}`, text: c.label, 'data-col': c.col });
    th.addEventListener('click', () => sortSegments(c.col));
    head.append(th);
  }
  const body = el('tbody');
  for (const r of rows) {
    const tr = el('tr');
    for (const c of SEGMENT_COLUMNS) {
      if (!c.bar) { tr.append(el('td', { class: c.left ? 'left' : '', text: c.text(r) })); continue; }
      const bar = el('div', { class: 'bar', style: `width:${(100 * (r.active_users || 0)) / maxUsers}%` });
      tr.append(el('td', {}, el('div', { class: 'bar-cell' }, c.text(r), el('div', { class: 'bar-track' }, bar))));
    }
    body.append(tr);
  }
  box.append(el('table', { class: 'data' }, el('thead', {}, head), body, segmentTotals(rows)));
}

// Footer row with the totals of the shown segments.
function segmentTotals(rows) {
  const sum = (col) => rows.reduce((n, r) => n + (r[col] || 0), 0);
  const users = sum('active_users');
  const total = {
    country: 'Total',
    plan: `${rows.length} segment${rows.length === 1 ? '' : 's'}`,
    active_users: users,
    events: sum('events'),
    hours: sum('hours'),
    events_per_user: users ? sum('events') / users : null,
    minutes_per_user: users ? (sum('hours') * 60) / users : null,
  };
  const tr = el('tr');
  for (const c of SEGMENT_COLUMNS) {
    const text = c.col === 'country' || c.col === 'plan' ? total[c.col] : c.text(total);
    tr.append(el('td', { class: c.left ? 'left' : '', text }));
  }
  return el('tfoot', {}, tr);
}

function sortSegments(col) {
  const textual = col === 'country' || col === 'plan';
  state.sort = state.sort.col === col ? { col, desc: !state.sort.desc } : { col, desc: !textual };
  renderSegments();
}

/* ---------- quarantine ---------- */

function renderQuarantine() {
  const box = $('quarantine');
  const rows = rowsOf('quarantine');
  box.replaceChildren();
  if (rows.length === 0) {
    box.append(emptyNote('No quarantined rows'));
    $('quarantine-sub').textContent = 'Input rows rejected, by reason.';
    return;
  }
  const byReason = new Map();
  for (const r of rows) {
    const reason = labelOf(r.reason);
    const entry = byReason.get(reason) || { count: 0, fields: new Map() };
    entry.count += 1;
    const field = labelOf(r.field);
    entry.fields.set(field, (entry.fields.get(field) || 0) + 1);
    byReason.set(reason, entry);
  }
  const files = new Set(rows.map((r) => r.file)).size;
  $('quarantine-sub').textContent = `Input rows rejected, by reason, across ${fmtCount(files)} input file${files === 1 ? '' : 's'}.`;
  const sorted = Array.from(byReason.entries()).sort((a, b) => b[1].count - a[1].count);
  const max = sorted[0][1].count;
  const body = el('tbody');
  for (const [reason, e] of sorted) {
    const fields = Array.from(e.fields.entries()).sort((a, b) => b[1] - a[1])
      .map(([f, n]) => `${f} (${fmtCount(n)})`).join(', ');
    const bar = el('div', { class: 'bar bad', style: `width:${(100 * e.count) / max}%` });
    body.append(el('tr', {},
      el('td', { text: reason.replaceAll('_', ' ') }),
      el('td', { class: 'left', text: fields }),
      el('td', {}, el('div', { class: 'bar-cell' }, fmtCount(e.count), el('div', { class: 'bar-track' }, bar))),
      el('td', { text: fmtPct((100 * e.count) / rows.length) })));
  }
  const head = el('tr', {}, el('th', { text: 'Reason' }), el('th', { class: 'left', text: 'Fields' }),
    el('th', { text: 'Rows' }), el('th', { text: 'Share' }));
  box.append(
    el('p', { class: 'quarantine-total' }, el('strong', { text: fmtCount(rows.length) }), ' rows quarantined'),
    el('table', { class: 'data' }, el('thead', {}, head), body));
}

/* ---------- controls ---------- */

// Sets min/max of the date inputs from the data's first and last day.
function renderDateBounds() {
  let first = '';
  let last = '';
  const see = (d) => {
    if (!first || d < first) first = d;
    if (!last || d > last) last = d;
  };
  for (const r of rowsOf('daily_active')) see(r.day);
  const c = windowColumns();
  if (c.xs.length) {
    see(new Date(c.xs[0] * 1000).toISOString().slice(0, 10));
    see(new Date(c.xs[c.xs.length - 1] * 1000).toISOString().slice(0, 10));
  }
  for (const id of ['from', 'to']) {
    $(id).min = first;
    $(id).max = last;
  }
}

const TIME_RENDERERS = ['windows', 'daily', 'monthly', 'mix', 'skip', 'adoption', 'hours', 'genres', 'artists'];

async function onRangeChange() {
  state.filters.from = $('from').value;
  state.filters.to = $('to').value;
  for (const r of TIME_RENDERERS) state.dirty.add(r);
  state.resetZoom = true;
  flushRender();
  state.resetZoom = false;
  try {
    if (await ensureArtists()) { state.dirty.add('artists'); flushRender(); }
  } catch (err) {
    console.warn('tidemark: loading artists failed', err);
  }
}

function onSegmentFilterChange() {
  state.filters.month = $('month').value;
  state.filters.country = $('country').value;
  state.filters.plan = $('plan').value;
  renderSegments();
}

function bindControls() {
  $('from').addEventListener('change', onRangeChange);
  $('to').addEventListener('change', onRangeChange);
  $('reset-range').addEventListener('click', () => {
    $('from').value = '';
    $('to').value = '';
    onRangeChange();
  });
  for (const id of ['month', 'country', 'plan']) $(id).addEventListener('change', onSegmentFilterChange);
  let timer = null;
  new ResizeObserver(() => {
    clearTimeout(timer);
    timer = setTimeout(resizeCharts, 100);
  }).observe(document.querySelector('main'));
}

/* ---------- start ---------- */

function start() {
  bindControls();
  updateStatusLine();
  connectChanges();
  pollStatus();
  loadWithRetry();
}

start();
