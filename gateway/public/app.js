// Dashboard: plain ES module, no framework. The API key lives in localStorage and goes out only as
// an Authorization header to this same origin. All data is inserted with textContent.
const KEY_STORAGE = 'mrv.apiKey';
const REFRESH_MS = 30_000;
const MAX_VERIFY = 25;

const $ = (sel) => document.querySelector(sel);
const state = { key: localStorage.getItem(KEY_STORAGE) || '', facilities: [], selected: null, charts: {}, timer: null };

class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

async function api(path) {
  const res = await fetch(path, { headers: { authorization: `Bearer ${state.key}`, accept: 'application/json' } });
  const body = await res.json().catch(() => ({}));
  if (!res.ok) throw new ApiError(res.status, body?.error?.code ?? 'HTTP_' + res.status, body?.error?.message ?? res.statusText);
  return body;
}

function setStatus(text, isError = false) {
  const el = $('#status');
  el.textContent = text;
  el.classList.toggle('error', isError);
}

function el(tag, opts = {}, children = []) {
  const e = document.createElement(tag);
  if (opts.text !== undefined) e.textContent = String(opts.text);
  if (opts.className) e.className = opts.className;
  if (opts.title) e.title = opts.title;
  for (const [k, v] of Object.entries(opts.data ?? {})) e.dataset[k] = String(v);
  for (const c of children) e.append(c);
  return e;
}

const groupInt = (text) => {
  try {
    return BigInt(text).toLocaleString('en-US');
  } catch {
    return String(text);
  }
};
const fmtTime = (iso) => new Date(iso).toISOString().replace('T', ' ').replace(/\.\d+Z$/, 'Z');
const short = (hex) => (hex && hex.length > 18 ? `${hex.slice(0, 10)}…${hex.slice(-6)}` : hex ?? '');
const signClass = (text) => (String(text).startsWith('-') ? 'num neg' : BigInt(text || '0') > 0n ? 'num pos' : 'num');

function numCell(value, field, extraClass = 'num') {
  return el('td', { text: groupInt(value), className: extraClass, data: { field, value } });
}

// ---------- facilities + balances
async function loadFacilities() {
  const { items: newest } = await api('/v1/facilities?limit=1000');
  // The API lists newest registration first; the dashboard shows them by id.
  const items = [...newest].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  state.facilities = items;
  const balances = await Promise.all(
    items.map((f) =>
      api(`/v1/facilities/${encodeURIComponent(f.id)}/balance`).then(
        (b) => ({ ok: true, b }),
        (err) => ({ ok: false, err }),
      ),
    ),
  );
  const tbody = $('#facilities tbody');
  tbody.replaceChildren();
  if (items.length === 0) {
    tbody.append(el('tr', {}, [el('td', { text: 'No facility registered yet.', className: 'empty' })]));
  }
  items.forEach((f, i) => {
    const r = balances[i];
    const tr = el('tr', { className: 'clickable', data: { facilityId: f.id } });
    tr.append(
      el('td', {}, [el('strong', { text: f.id }), document.createTextNode(' '), el('span', { text: f.name, className: 'hint' })]),
      el('td', { data: { field: 'status' } }, [
        el('span', { text: f.status, className: `pill ${f.status === 'active' ? 'ok' : 'bad'}` }),
        // The chain refuses this facility's settlement: the oracle retries with backoff; say why.
        ...(f.settlementStatus === 'blocked'
          ? [
              document.createTextNode(' '),
              el('span', { text: 'settlement blocked', className: 'pill bad', data: { field: 'settlementStatus', value: 'blocked' } }),
              el('div', { text: f.settlementBlocked?.reason ?? '', className: 'hint', data: { field: 'settlementBlockedReason' } }),
            ]
          : []),
      ]),
    );
    if (r.ok) {
      const b = r.b;
      tr.append(
        el('td', { text: b.balanceTonnes, className: 'num', data: { field: 'balanceTonnes', value: b.balanceTonnes } }),
        numCell(b.balanceGrams, 'balanceGrams'),
        numCell(b.mintedGrams, 'mintedGrams'),
        numCell(b.burnedGrams, 'burnedGrams'),
        numCell(b.retiredGrams, 'retiredGrams'),
        numCell(b.deficitGrams, 'deficitGrams', b.deficitGrams !== '0' ? 'num neg' : 'num'),
      );
    } else {
      const td = el('td', { text: `balance unavailable: ${r.err.message}`, className: 'empty' });
      td.colSpan = 6;
      tr.append(td);
    }
    tr.addEventListener('click', () => selectFacility(f.id));
    tbody.append(tr);
  });
  const select = $('#facility-select');
  select.replaceChildren(...items.map((f) => el('option', { text: `${f.id} — ${f.name}` })));
  items.forEach((f, i) => (select.options[i].value = f.id));
  if (!state.selected || !items.some((f) => f.id === state.selected)) state.selected = items[0]?.id ?? null;
  return items.length;
}

// ---------- one facility
async function selectFacility(id) {
  state.selected = id;
  await loadDetail().catch(showError);
}

async function loadDetail() {
  const id = state.selected;
  $('#detail').hidden = !id;
  if (!id) return;
  $('#facility-select').value = id;
  document.querySelectorAll('#facilities tbody tr').forEach((tr) => tr.classList.toggle('selected', tr.dataset.facilityId === id));
  const f = state.facilities.find((x) => x.id === id);
  $('#detail-name').textContent = f ? `${f.id} · ${f.name}` : id;
  const q = encodeURIComponent(id);
  const [windows, settlements, retirements, batches] = await Promise.all([
    api(`/v1/facilities/${q}/windows`).catch((e) => ({ items: [], error: e })),
    api(`/v1/settlements?facilityId=${q}&limit=500`).catch((e) => ({ items: [], error: e })),
    api(`/v1/retirements?facilityId=${q}`).catch((e) => ({ items: [], error: e })),
    api(`/v1/batches?facilityId=${q}`).catch((e) => ({ items: [], error: e })),
  ]);
  renderBatches(batches);
  drawWindows(windows);
  drawCredits(settlements.items);
  renderSettlements(settlements);
  renderRetirements(retirements);
}

/** What the window did to the deficit: +added (a negative net the balance could not cover) or −paid down. */
function deficitChangeCell(s) {
  const added = s.deficitAddedGrams ?? '0';
  const paid = s.deficitPaidGrams ?? '0';
  const text = added !== '0' ? `+${groupInt(added)}` : paid !== '0' ? `−${groupInt(paid)}` : '0';
  const value = added !== '0' ? added : paid !== '0' ? `-${paid}` : '0';
  return el('td', { text, className: added !== '0' ? 'num neg' : 'num', data: { field: 'deficitChange', value } });
}

function renderSettlements({ items, error }) {
  const tbody = $('#settlements tbody');
  tbody.replaceChildren();
  if (error || items.length === 0) {
    const td = el('td', { text: error ? `unavailable: ${error.message}` : 'No settlement yet.', className: 'empty' });
    td.colSpan = 9;
    tbody.append(el('tr', {}, [td]));
    return;
  }
  const rows = [...items].sort((a, b) => b.windowStart.localeCompare(a.windowStart));
  const pending = [];
  rows.forEach((s, i) => {
    const verify = el('td', {}, [el('span', { text: i < MAX_VERIFY ? 'checking…' : 'not checked', className: 'pill muted' })]);
    verify.dataset.field = 'verify';
    const tr = el('tr', { data: { settlementId: s.id } }, [
      el('td', { text: `${fmtTime(s.windowStart)} → ${fmtTime(s.windowEnd).slice(11)}` }),
      el('td', {}, [el('span', { text: s.complete ? 'complete' : 'incomplete', className: `pill ${s.complete ? 'ok' : 'warn'}` })]),
      el('td', { text: groupInt(s.netGrams), className: signClass(s.netGrams) }),
      el('td', { text: groupInt(s.mintedGrams), className: 'num' }),
      el('td', { text: groupInt(s.burnedGrams), className: 'num' }),
      deficitChangeCell(s),
      numCell(s.deficitAfterGrams ?? s.deficitGrams, 'deficitAfterGrams'),
      evidenceCell(s),
      verify,
    ]);
    tbody.append(tr);
    if (i < MAX_VERIFY) pending.push([s.id, verify]);
  });
  // A few at a time: each verification recomputes a Merkle root on the server.
  const worker = async () => {
    for (let next = pending.shift(); next; next = pending.shift()) {
      const [id, cell] = next;
      let pill;
      try {
        const r = await api(`/v1/settlements/${encodeURIComponent(id)}/verify`);
        pill = el('span', { text: r.match ? 'verified' : 'MISMATCH', className: `pill ${r.match ? 'ok' : 'bad'}` });
        cell.dataset.match = String(r.match);
      } catch (e) {
        pill = el('span', { text: 'unavailable', className: 'pill muted', title: e.message });
      }
      cell.replaceChildren(pill);
    }
  };
  Promise.all([worker(), worker(), worker()]).catch(showError);
}

// "signed by N/N devices, chains unbroken" (or which device's chain is broken), and the audit bundle.
function signaturesText(sig) {
  if (!sig || sig.devices === 0) return '';
  const head = `signed by ${sig.signed}/${sig.devices} devices`;
  if (sig.signed === 0) return head;
  return sig.chainsUnbroken ? `${head}, chains unbroken` : `${head}, chain broken: ${sig.broken.join(', ')}`;
}

// The evidence root, then the device signatures and the audit bundle under it.
function evidenceCell(s) {
  const cell = el('td', { className: 'sig' }, [el('div', { text: short(s.evidenceRoot), className: 'mono', title: s.evidenceRoot })]);
  const sig = signaturesLine(s);
  if (sig.childNodes.length) cell.append(sig);
  return cell;
}

function signaturesLine(s) {
  const sig = s.signatures;
  const text = signaturesText(sig);
  const cls = !sig || sig.signed === 0 ? 'muted' : sig.chainsUnbroken && sig.signed === sig.devices ? 'ok' : sig.chainsUnbroken ? 'warn' : 'bad';
  const children = [];
  if (text) children.push(el('span', { text, className: `pill ${cls}`, data: { field: 'signatures' } }), document.createTextNode(' '));
  if (s.bundleUrl) children.push(bundleLink(s));
  return el('div', {}, children);
}

// The bundle needs the API key (an Authorization header), so the link fetches it and saves the JSON.
function bundleLink(s) {
  const a = el('a', { text: 'bundle', title: 'audit bundle: npm run audit -- bundle.json --rpc URL --ledger 0x…', data: { field: 'bundle' } });
  a.href = s.bundleUrl;
  a.download = `bundle-${s.id}.json`;
  a.addEventListener('click', async (ev) => {
    ev.preventDefault();
    try {
      const body = await api(s.bundleUrl);
      const url = URL.createObjectURL(new Blob([JSON.stringify(body, null, 2)], { type: 'application/json' }));
      const save = el('a');
      save.href = url;
      save.download = a.download;
      save.click();
      setTimeout(() => URL.revokeObjectURL(url), 10_000);
    } catch (e) {
      showError(e);
    }
  });
  return a;
}

function renderBatches({ items, error }) {
  const tbody = $('#batches tbody');
  tbody.replaceChildren();
  if (error || items.length === 0) {
    const td = el('td', { text: error ? `unavailable: ${error.message}` : 'No batch yet: the first settlement that mints opens one.', className: 'empty' });
    td.colSpan = 6;
    tbody.append(el('tr', {}, [td]));
    return;
  }
  for (const b of items) {
    tbody.append(
      el('tr', { data: { batchId: b.id } }, [
        el('td', { text: b.vintage, data: { field: 'vintage', value: b.vintage } }),
        numCell(b.issuedGrams, 'issuedGrams'),
        numCell(b.retiredGrams, 'retiredGrams'),
        numCell(b.burnedGrams, 'burnedGrams'),
        numCell(b.ownerBalanceGrams, 'ownerBalanceGrams'),
        el('td', { text: `${b.serialPrefix}1 …`, className: 'mono', title: `token id ${b.id}` }),
      ]),
    );
  }
}

/** The certificate page (public, printable), opened in a new tab. */
function certificateLink(id) {
  const a = el('a', { text: `#${id}`, title: 'printable retirement certificate' });
  a.href = `/v1/retirements/${encodeURIComponent(id)}`;
  a.target = '_blank';
  a.rel = 'noopener';
  a.className = 'certificate';
  return a;
}

function renderRetirements({ items, error }) {
  const tbody = $('#retirements tbody');
  tbody.replaceChildren();
  if (error || items.length === 0) {
    const td = el('td', { text: error ? `unavailable: ${error.message}` : 'No retirement yet.', className: 'empty' });
    td.colSpan = 7;
    tbody.append(el('tr', {}, [td]));
    return;
  }
  for (const r of items) {
    const serials = (r.parts ?? []).map((p) => `${p.firstSerial} … ${p.lastSerial}`).join('; ');
    tbody.append(
      el('tr', {}, [
        el('td', {}, [certificateLink(r.id)]),
        el('td', { text: short(r.account), className: 'mono', title: r.account }),
        el('td', { text: r.amountTonnes, className: 'num' }),
        el('td', { text: r.beneficiary }),
        el('td', { text: r.reason }),
        el('td', { text: r.retiredAt ? fmtTime(r.retiredAt) : '' }),
        el('td', { text: serials, className: 'mono' }),
      ]),
    );
  }
}

// ---------- charts (chart.js UMD, loaded with defer before this module runs)
const PALETTE = ['#1f7a5a', '#2b6cb0', '#c05621', '#805ad5', '#b83280', '#2c7a7b', '#975a16', '#4a5568'];
const timeTick = (v) => new Date(v).toISOString().slice(11, 19);

function chart(name, config) {
  state.charts[name]?.destroy();
  state.charts[name] = new window.Chart($(`#${name}-chart`), config);
}

// ---------- per-window figures: what a regulator reads (GET /v1/facilities/{id}/windows)
// The API's values are exact decimal text; Number() below is for drawing only, the table shows the text.
const SOURCES = [
  { field: 'gridImport', label: 'grid import', color: '#2b6cb0' },
  { field: 'gas', label: 'natural gas', color: '#c05621' },
  { field: 'direct', label: 'direct CO₂', color: '#805ad5' },
  { field: 'exportCredit', label: 'export credit (−)', color: '#2c7a7b', negative: true },
];
const METRICS = [
  { metric: 'electricity_import', label: 'import', unit: 'kWh', axis: 'y' },
  { metric: 'electricity_export', label: 'export', unit: 'kWh', axis: 'y' },
  { metric: 'renewable_generation', label: 'renewable', unit: 'kWh', axis: 'y' },
  { metric: 'natural_gas', label: 'gas', unit: 'm³', axis: 'yM3' },
  { metric: 'co2_direct', label: 'direct CO₂', unit: 'kg', axis: 'yKg' },
];
const windowLabel = (w) => `${fmtTime(w.windowStart)} → ${fmtTime(w.windowEnd).slice(11)}`;
const windowState = (w) => (w.settled ? 'settled' : w.open ? 'in progress' : 'not settled yet');
// A settled window whose stored readings no longer recompute to its record (see /verify).
const stateClass = (w) => (w.recomputedMatches === false ? 'bad' : w.settled ? 'ok' : 'muted');
const stateTitle = (w) => (w.recomputedMatches === false ? 'the stored readings no longer recompute to this settlement: see Verification' : w.settlementId ?? '');
// Windows not settled yet are drawn paler: their figures change until the oracle settles them.
const shade = (color, w) => (w.settled ? color : `${color}66`);

function drawWindows({ items, error }) {
  const note = $('#windows-note');
  if (error) {
    note.textContent = `Per-window figures unavailable: ${error.message}`;
  } else {
    const settled = items.filter((w) => w.settled).length;
    note.textContent = `${items.length} windows: ${settled} settled, ${items.length - settled} provisional (drawn paler; they change until settled).`;
  }
  const labels = items.map((w) => timeTick(Date.parse(w.windowStart)));
  const datasets = SOURCES.map((src) => ({
    type: 'bar',
    label: `${src.label} (kg)`,
    stack: 'sources',
    data: items.map((w) => (src.negative ? -1 : 1) * Number(w.emissionsKg[src.field])),
    backgroundColor: items.map((w) => shade(src.color, w)),
  }));
  datasets.push(
    { type: 'line', label: 'actual (kg)', stack: 'actual', data: items.map((w) => Number(w.actualKg)), borderColor: '#1c2a25', backgroundColor: '#1c2a25', showLine: false, pointRadius: 3 },
    { type: 'line', label: 'baseline (kg)', stack: 'baseline', data: items.map((w) => Number(w.baselineKg)), borderColor: '#b3261e', backgroundColor: '#b3261e', borderDash: [6, 4], pointRadius: 0, stepped: 'middle' },
  );
  chart('emissions', {
    type: 'bar',
    data: { labels, datasets },
    options: {
      animation: false,
      maintainAspectRatio: false,
      scales: { x: { stacked: true, ticks: { maxTicksLimit: 8 } }, y: { stacked: true, title: { display: true, text: 'kg CO₂e' } } },
      plugins: { legend: { labels: { boxWidth: 12, font: { size: 11 } } } },
    },
  });

  // One series per device and metric that moved in these windows; one axis per unit.
  const devices = [...new Set(items.flatMap((w) => w.devices.map((d) => d.deviceId)))].sort();
  const series = [];
  for (const deviceId of devices) {
    for (const m of METRICS) {
      const data = items.map((w) => {
        const d = w.devices.find((x) => x.deviceId === deviceId);
        return d ? Number(d.totals[m.metric]) : null;
      });
      if (data.some((v) => v)) series.push({ deviceId, m, data });
    }
  }
  const used = new Set(series.map((x) => x.m.axis));
  chart('consumption', {
    type: 'bar',
    data: {
      labels,
      datasets: series.map(({ deviceId, m, data }, i) => ({
        label: `${deviceId} · ${m.label} (${m.unit})`,
        data,
        yAxisID: m.axis,
        backgroundColor: items.map((w) => shade(PALETTE[i % PALETTE.length], w)),
      })),
    },
    options: {
      animation: false,
      maintainAspectRatio: false,
      scales: {
        x: { ticks: { maxTicksLimit: 8 } },
        y: { display: used.has('y') || used.size === 0, title: { display: true, text: 'kWh' } },
        yM3: { position: 'right', display: used.has('yM3'), grid: { drawOnChartArea: false }, title: { display: true, text: 'm³' } },
        yKg: { position: 'right', display: used.has('yKg'), grid: { drawOnChartArea: false }, title: { display: true, text: 'kg' } },
      },
      plugins: { legend: { labels: { boxWidth: 12, font: { size: 11 } } } },
    },
  });
  renderWindowTables(items);
}

// The same figures as text (exact), newest window first: the charts' accessible form.
function renderWindowTables(items) {
  const rows = [...items].reverse();
  const figures = $('#windows tbody');
  const consumption = $('#consumption tbody');
  figures.replaceChildren();
  consumption.replaceChildren();
  const exact = (value, field, cls = 'num') => el('td', { text: value, className: cls, data: { field, value } });
  for (const w of rows) {
    figures.append(
      el('tr', { data: { windowStart: w.windowStart } }, [
        el('td', { text: windowLabel(w) }),
        el('td', { data: { field: 'state', value: windowState(w) } }, [
          el('span', { text: windowState(w), className: `pill ${stateClass(w)}`, title: stateTitle(w) }),
        ]),
        el('td', { text: w.complete ? 'complete' : 'incomplete', data: { field: 'complete', value: w.complete } }),
        ...SOURCES.map((src) => exact(w.emissionsKg[src.field], src.field)),
        exact(w.actualKg, 'actualKg'),
        exact(w.baselineKg, 'baselineKg'),
        exact(w.netGrams, 'netGrams', signClass(w.netGrams)),
      ]),
    );
    for (const d of w.devices) {
      consumption.append(
        el('tr', { data: { windowStart: w.windowStart, deviceId: d.deviceId } }, [
          el('td', { text: windowLabel(w) }),
          el('td', { text: d.deviceId, className: 'mono', data: { field: 'deviceId' } }),
          el('td', { text: d.status, data: { field: 'status' } }),
          ...METRICS.map((m) => exact(d.totals[m.metric], m.metric)),
        ]),
      );
    }
  }
  if (rows.length === 0) {
    const td = el('td', { text: 'No window yet.', className: 'empty' });
    td.colSpan = 10;
    figures.append(el('tr', {}, [td]));
  }
}

function drawCredits(items) {
  const rows = [...items].sort((a, b) => a.windowStart.localeCompare(b.windowStart));
  let total = 0n;
  const cumulative = [];
  const perWindow = [];
  for (const s of rows) {
    total += BigInt(s.netGrams);
    const x = Date.parse(s.windowEnd);
    cumulative.push({ x, y: Number(total) });
    perWindow.push({ x, y: Number(s.netGrams) });
  }
  chart('credits', {
    data: {
      datasets: [
        { type: 'line', label: 'cumulative net (g)', data: cumulative, borderColor: '#1f7a5a', backgroundColor: '#1f7a5a', stepped: true, pointRadius: 2 },
        { type: 'bar', label: 'net per window (g)', data: perWindow, backgroundColor: perWindow.map((p) => (p.y < 0 ? '#e5867f' : '#8fd1b5')) },
      ],
    },
    options: {
      animation: false,
      maintainAspectRatio: false,
      parsing: false,
      scales: { x: { type: 'linear', ticks: { callback: timeTick, maxTicksLimit: 8 } } },
      plugins: { legend: { labels: { boxWidth: 12, font: { size: 11 } } } },
    },
  });
}

// ---------- wiring
function showError(err) {
  const msg = err instanceof ApiError && err.status === 401 ? 'That API key is not valid (401).' : `Error: ${err.message}`;
  setStatus(msg, true);
}

async function refresh() {
  if (!state.key) {
    setStatus('Enter an API key to load the data.');
    return;
  }
  document.body.dataset.loaded = 'false';
  try {
    const n = await loadFacilities();
    document.body.dataset.loaded = 'true';
    setStatus(`${n} facilit${n === 1 ? 'y' : 'ies'} · updated ${new Date().toLocaleTimeString()}`);
    await loadDetail();
  } catch (err) {
    showError(err);
  }
}

$('#key-form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  state.key = $('#api-key').value.trim();
  if (state.key) localStorage.setItem(KEY_STORAGE, state.key);
  refresh();
});
$('#forget-key').addEventListener('click', () => {
  localStorage.removeItem(KEY_STORAGE);
  state.key = '';
  $('#api-key').value = '';
  $('#facilities tbody').replaceChildren();
  $('#detail').hidden = true;
  setStatus('Key forgotten.');
});
$('#facility-select').addEventListener('change', (ev) => selectFacility(ev.target.value));

$('#api-key').value = state.key;
refresh();
state.timer = setInterval(refresh, REFRESH_MS);
