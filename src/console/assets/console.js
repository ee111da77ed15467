// entrowatch console: the runs list (/), one run (/runs/<id>) and the
// self-contained report page. Plain DOM and Dygraph; no other dependency.
(function () {
  'use strict';

  const STATES = {
    HEALTH_STATE_UNSPECIFIED: { label: 'UNKNOWN', color: '#9e9e9e' },
    WARMUP: { label: 'WARMUP', color: '#78909c' },
    NORMAL: { label: 'NORMAL', color: '#2e7d32' },
    COMFORT_ZONE: { label: 'COMFORT_ZONE', color: '#1565c0' },
    PANIC_ZONE: { label: 'PANIC_ZONE', color: '#c62828' },
    STAGNATION: { label: 'STAGNATION', color: '#ef6c00' },
    PATHOLOGICAL_CONFIDENCE: { label: 'PATHOLOGICAL_CONFIDENCE', color: '#6a1b9a' },
  };
  const SEVERITY_ORDER = { CRITICAL: 3, WARNING: 2, INFO: 1 };
  const REFRESH_MS = 2000;
  const body = document.body;
  const page = body.dataset.page;
  const staleSeconds = Number(body.dataset.staleSeconds || 600);

  // ---- small helpers -------------------------------------------------------

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null) continue;
      if (k === 'class') node.className = v;
      else if (k === 'text') node.textContent = v;
      else if (k.startsWith('on')) node.addEventListener(k.slice(2), v);
      else node.setAttribute(k, v);
    }
    for (const child of children) {
      if (child === null || child === undefined) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function num(v) {
    return v === undefined || v === null ? 0 : Number(v);
  }

  function stateOf(name) {
    return STATES[name] || { label: name || 'UNKNOWN', color: '#9e9e9e' };
  }

  function badge(stateName) {
    const s = stateOf(stateName);
    return el('span', { class: 'badge', style: 'background:' + s.color, 'data-state': s.label,
                        text: s.label });
  }

  function fmt(v, digits) {
    if (v === null || v === undefined || Number.isNaN(v)) return '–';
    const a = Math.abs(v);
    if (a !== 0 && (a < 1e-3 || a >= 1e5)) return v.toExponential(2);
    return v.toFixed(digits === undefined ? 3 : digits);
  }

  function age(timestamp) {
    if (!timestamp) return null;
    return Math.max(0, (Date.now() - Date.parse(timestamp)) / 1000);
  }

  function ageText(seconds) {
    if (seconds === null) return 'never';
    if (seconds < 60) return Math.round(seconds) + ' s ago';
    if (seconds < 3600) return Math.round(seconds / 60) + ' min ago';
    if (seconds < 86400) return (seconds / 3600).toFixed(1) + ' h ago';
    return (seconds / 86400).toFixed(1) + ' d ago';
  }

  function liveness(run) {
    if (run.finished) return 'finished';
    const a = age(run.lastReportTime);
    return a !== null && a > staleSeconds ? 'stale' : 'live';
  }

  async function getJson(url) {
    const response = await fetch(url, { credentials: 'same-origin', cache: 'no-store' });
    if (!response.ok) {
      const text = (await response.text()).trim();
      const error = new Error(text || (url + ': HTTP ' + response.status));
      error.status = response.status;
      throw error;
    }
    return response.json();
  }

  function showError(message) {
    let banner = document.getElementById('error');
    if (!banner) {
      banner = el('div', { id: 'error', class: 'error' });
      document.getElementById('main').prepend(banner);
    }
    banner.textContent = message;
  }

  function clearError() {
    const banner = document.getElementById('error');
    if (banner) banner.remove();
  }

  function markReady() {
    body.dataset.ready = '1';
  }

  function patternName(a) {
    return (a.pattern || 'PATTERN_UNSPECIFIED').replace(/_/g, ' ').toLowerCase();
  }

  function anomalyKey(a) {
    return [a.pattern, a.subject, num(a.sinceStep)].join('|');
  }

  // ---- runs list -----------------------------------------------------------

  function renderRuns(data) {
    const runs = (data.runs || []).slice().sort((a, b) => a.runId.localeCompare(b.runId));
    const main = document.getElementById('main');
    main.replaceChildren();
    main.append(el('h1', { text: 'Runs' }),
                el('p', { class: 'muted', text: runs.length + ' tracked · refreshes every ' +
                                                 REFRESH_MS / 1000 + ' s · stale after ' +
                                                 staleSeconds + ' s without a report' }));
    if (runs.length === 0) {
      main.append(el('p', { class: 'empty', text: 'No run is tracked yet. Point a training job ' +
                                                  'at this entrowatchd (gRPC) and it appears here.' }));
      return;
    }
    const table = el('table', { class: 'runs' },
                     el('thead', {}, el('tr', {}, ...['Run', 'State', 'Active anomalies', 'Last step',
                                                      'Last report', 'Status']
                                                       .map((h) => el('th', { text: h })))));
    const tbody = el('tbody');
    for (const run of runs) {
      const anomalies = (run.anomalies || []).slice()
          .sort((a, b) => (SEVERITY_ORDER[b.severity] || 0) - (SEVERITY_ORDER[a.severity] || 0));
      const list = el('div', { class: 'anomalies' });
      for (const a of anomalies) {
        list.append(el('div', { class: 'anomaly sev-' + (a.severity || '').toLowerCase(),
                                title: (a.reason || '') + '\n→ ' + (a.recommendedAction || '') },
                       patternName(a), a.subject ? ' (' + a.subject + ')' : '',
                       ' since step ' + num(a.sinceStep)));
      }
      if (anomalies.length === 0) list.append(el('span', { class: 'muted', text: 'none' }));
      const status = liveness(run);
      tbody.append(el('tr', { 'data-run': run.runId },
                      el('td', {}, el('a', { href: '/runs/' + encodeURIComponent(run.runId),
                                             text: run.runId })),
                      el('td', {}, badge((run.verdict || {}).state)),
                      el('td', {}, list),
                      el('td', { class: 'num', text: num(run.lastStep) }),
                      el('td', { text: ageText(age(run.lastReportTime)) }),
                      el('td', {}, el('span', { class: 'status status-' + status, text: status }))));
    }
    table.append(tbody);
    main.append(table);
  }

  async function runsPage() {
    const refresh = async () => {
      try {
        renderRuns(await getJson('/api/v1/runs'));
        clearError();
      } catch (e) {
        showError('Cannot load the runs: ' + e.message);
      }
      markReady();
    };
    await refresh();
    setInterval(refresh, REFRESH_MS);
  }

  // ---- one run -------------------------------------------------------------

  // State of the run page: the data, the charts, the zoom and the chosen step.
  const view = {
    runId: body.dataset.run,
    status: null,
    timeline: null,
    points: [],
    charts: [],
    range: null,  // [from, to] steps, or null for the whole run
    step: null,   // chosen step of the per-head view
    syncing: false,
  };

  function readUrl() {
    const q = new URLSearchParams(location.search);
    const from = q.get('from');
    const to = q.get('to');
    view.range = from !== null && to !== null && Number(to) > Number(from)
        ? [Number(from), Number(to)] : null;
    view.step = q.get('step') !== null ? Number(q.get('step')) : null;
  }

  function writeUrl() {
    if (page === 'report') return;
    const q = new URLSearchParams();
    if (view.range) {
      q.set('from', Math.floor(view.range[0]));
      q.set('to', Math.ceil(view.range[1]));
    }
    if (view.step !== null) q.set('step', view.step);
    const search = q.toString();
    history.replaceState(null, '', location.pathname + (search ? '?' + search : ''));
  }

  function lastStep() {
    return view.points.length ? view.points[view.points.length - 1].step : 0;
  }

  // Spans of health states as [from, to, state] in steps.
  function stateSpans() {
    const spans = (view.timeline && view.timeline.states) || [];
    const out = [];
    for (let i = 0; i < spans.length; i++) {
      const from = num(spans[i].sinceStep);
      const to = i + 1 < spans.length ? num(spans[i + 1].sinceStep) : Math.max(lastStep(), from);
      out.push([from, to, spans[i].state]);
    }
    return out;
  }

  // Every anomaly to mark: the fired log plus the active ones.
  function allAnomalies() {
    const seen = new Map();
    for (const a of ((view.timeline && view.timeline.anomalies) || [])) seen.set(anomalyKey(a), a);
    for (const a of ((view.status && view.status.anomalies) || [])) seen.set(anomalyKey(a), a);
    return Array.from(seen.values()).sort((a, b) => num(a.sinceStep) - num(b.sinceStep));
  }

  function underlay(canvas, area, g) {
    const [x0, x1] = g.xAxisRange();
    for (const [from, to, state] of stateSpans()) {
      if (to < x0 || from > x1) continue;
      const left = g.toDomXCoord(Math.max(from, x0));
      const right = g.toDomXCoord(Math.min(Math.max(to, from + 1), x1));
      canvas.fillStyle = stateOf(state).color + '1f';
      canvas.fillRect(left, area.y, Math.max(1, right - left), area.h);
    }
    canvas.save();
    canvas.setLineDash([4, 3]);
    canvas.strokeStyle = '#c62828';
    canvas.lineWidth = 1;
    for (const a of allAnomalies()) {
      const x = num(a.sinceStep);
      if (x < x0 || x > x1) continue;
      const px = Math.round(g.toDomXCoord(x)) + 0.5;
      canvas.beginPath();
      canvas.moveTo(px, area.y);
      canvas.lineTo(px, area.y + area.h);
      canvas.stroke();
    }
    canvas.restore();
  }

  // Dygraph annotations need an x that is a data point: the first point at
  // or after the anomaly's since_step.
  function annotationsFor(series, rows) {
    const out = [];
    for (const a of allAnomalies()) {
      const since = num(a.sinceStep);
      const row = rows.find((r) => r[0] >= since && r[1] !== null);
      if (!row) continue;
      out.push({
        series: series,
        x: row[0],
        shortText: '!',
        width: 14,
        height: 14,
        text: patternName(a) + (a.subject ? ' (' + a.subject + ')' : '') + ' since step ' + since +
              ': ' + (a.reason || '') + ' → ' + (a.recommendedAction || ''),
        cssClass: 'annotation sev-' + (a.severity || '').toLowerCase(),
        clickHandler: () => selectAnomaly(a),
      });
    }
    return out;
  }

  function selectAnomaly(a) {
    const since = num(a.sinceStep);
    const span = Math.max(20, Math.round(lastStep() / 20));
    setRange([Math.max(0, since - span), since + span]);
    const row = document.querySelector('[data-anomaly="' + CSS.escape(anomalyKey(a)) + '"]');
    if (row) {
      document.querySelectorAll('.anomaly-row.selected').forEach((r) => r.classList.remove('selected'));
      row.classList.add('selected');
    }
  }

  function setRange(range) {
    view.range = range;
    view.syncing = true;
    for (const c of view.charts) {
      c.graph.updateOptions({ dateWindow: range });
    }
    view.syncing = false;
    drawHeatmap();
    renderRangeLine();
    writeUrl();
  }

  function chartSpecs() {
    const p = view.points;
    const specs = [];
    specs.push({
      id: 'entropy', title: 'Token entropy (nats): mean, p10–p90 band',
      labels: ['step', 'entropy'],
      rows: p.map((s) => [s.step, s.tokenCount > 0 ? [s.p10, s.mean, s.p90] : null]),
      options: { customBars: true, colors: ['#1565c0'] },
      baselines: baselineBands(),
    });
    specs.push({
      id: 'normalized', title: 'Normalized entropy and high-entropy token ratio',
      labels: ['step', 'normalized', 'high ratio'],
      rows: p.map((s) => [s.step, s.tokenCount > 0 ? s.normalized : null,
                          s.tokenCount > 0 ? s.highRatio : null]),
      options: { colors: ['#00838f', '#9e9d24'], valueRange: [0, 1.02] },
    });
    specs.push({
      id: 'grad', title: 'Gradient norm (log scale)',
      labels: ['step', 'grad norm'],
      rows: p.map((s) => [s.step, s.hasGrad && s.grad > 0 ? s.grad : null]),
      options: { logscale: true, colors: ['#c62828'] },
      empty: 'No gradient norm reported.',
    });
    specs.push({
      id: 'loss', title: 'Loss and learning rate',
      labels: ['step', 'loss', 'learning rate'],
      rows: p.map((s) => [s.step, s.hasLoss ? s.loss : null, s.lr > 0 ? s.lr : null]),
      // The learning rate from zero, so a schedule reads as a proportion.
      options: { colors: ['#37474f', '#8d6e63'], series: { 'learning rate': { axis: 'y2' } },
                 axes: { y2: { valueRange: [0, 1.08 * Math.max(1e-12, ...p.map((s) => s.lr))],
                               axisLabelFormatter: (v) => Number(v).toExponential(1) } } },
      empty: 'No loss or learning rate reported.',
    });
    const names = Array.from(new Set(p.flatMap((s) => Object.keys(s.scalars)))).sort();
    specs.push({
      id: 'scalars', title: 'Named scalars' + (names.length ? ' (' + names.join(', ') + ')' : ''),
      labels: ['step', ...names],
      rows: p.map((s) => [s.step, ...names.map((n) => (n in s.scalars ? s.scalars[n] : null))]),
      options: {},
      empty: 'No named scalars (reward, KL, ...) reported.',
    });
    specs.push({
      id: 'generated', title: 'Generated-token entropy (rollouts, nats)',
      labels: ['step', 'generated'],
      rows: p.map((s) => [s.step, s.generatedCount > 0 ? s.generated : null]),
      options: { colors: ['#6a1b9a'] },
      empty: 'No rollout (generated-token) entropy reported.',
    });
    return specs;
  }

  // The entropy baseline where the verdict evidence gives it (abnormal states
  // name it): its mean and, with a z-score, mean ± threshold·sigma; one band
  // per state span, the current verdict's for the last one.
  function baselineFrom(evidence) {
    const base = (evidence || []).find((e) => e.signal === 'token_entropy_mean_nats' &&
                                              e.comparison === 'baseline');
    if (!base) return null;
    const mean = num(base.threshold);
    const z = evidence.find((e) => e.signal === 'token_entropy_mean_z');
    let half = 0;
    if (z && num(z.value) !== 0) {
      half = Math.abs(num(z.threshold)) * Math.abs((num(base.value) - mean) / num(z.value));
    }
    return { mean: mean, low: mean - half, high: mean + half };
  }

  function baselineBands() {
    const spans = (view.timeline && view.timeline.states) || [];
    const ranges = stateSpans();
    const bands = [];
    spans.forEach((span, i) => {
      let evidence = span.evidence;
      if (i === spans.length - 1 && view.status && view.status.verdict &&
          (view.status.verdict.evidence || []).length) {
        evidence = view.status.verdict.evidence;
      }
      const band = baselineFrom(evidence);
      if (band) bands.push(Object.assign(band, { from: ranges[i][0], to: ranges[i][1] }));
    });
    return bands;
  }

  function hasData(spec) {
    return spec.rows.some((r) => r.slice(1).some((v) => v !== null));
  }

  function makeChart(spec, container) {
    const options = Object.assign({
      labels: spec.labels,
      legend: 'always',
      labelsSeparateLines: false,
      labelsDiv: container.querySelector('.legend'),
      connectSeparatedPoints: false,
      strokeWidth: 1.3,
      gridLineColor: '#e0e0e0',
      axisLabelFontSize: 11,
      xLabelHeight: 14,
      animatedZooms: false,
      dateWindow: view.range,
      xlabel: null,
      digitsAfterDecimal: 4,
      underlayCallback: (ctx, area, g) => {
        underlay(ctx, area, g);
        for (const b of spec.baselines || []) {
          const left = g.toDomXCoord(b.from);
          const right = g.toDomXCoord(Math.max(b.to, b.from + 1));
          const yTop = g.toDomYCoord(b.high);
          const yBottom = g.toDomYCoord(b.low);
          ctx.fillStyle = 'rgba(46,125,50,0.14)';
          ctx.fillRect(left, Math.min(yTop, yBottom), right - left, Math.max(2, Math.abs(yBottom - yTop)));
          ctx.strokeStyle = 'rgba(46,125,50,0.8)';
          ctx.setLineDash([6, 4]);
          const y = g.toDomYCoord(b.mean);
          ctx.beginPath();
          ctx.moveTo(left, y);
          ctx.lineTo(right, y);
          ctx.stroke();
          ctx.setLineDash([]);
        }
      },
      zoomCallback: (minX, maxX) => {
        if (view.syncing) return;
        const [x0, x1] = [view.points[0] ? view.points[0].step : 0, lastStep()];
        setRange(minX <= x0 && maxX >= x1 ? null : [minX, maxX]);
      },
      clickCallback: (event, x) => {
        chooseStep(x);
      },
      // Where the series are drawn and in which colours, for tests and tools
      // that look at the rendered page.
      drawCallback: (g) => {
        const a = g.getArea();
        g.graphDiv.dataset.area = [a.x, a.y, a.w, a.h].map(Math.round).join(',');
        g.graphDiv.dataset.colors = g.getColors().join(';');
      },
    }, spec.options);
    const graph = new Dygraph(container.querySelector('.plot'), spec.rows, options);
    graph.ready(() => {
      if (spec.labels.length > 1) graph.setAnnotations(annotationsFor(spec.labels[1], spec.rows));
    });
    return graph;
  }

  function renderCharts() {
    const grid = document.getElementById('charts');
    if (view.points.length === 0) {
      for (const c of view.charts) c.graph.destroy();
      view.charts = [];
      grid.replaceChildren(el('p', { class: 'empty', id: 'no-steps',
                                     text: 'No step of this run is finalized yet: a step is ' +
                                           'finalized when all its ranks reported it, or after ' +
                                           'aggregation.step_timeout_seconds.' }));
      return;
    }
    const specs = chartSpecs();
    if (view.charts.length === 0 || view.charts.map((c) => c.labels.join()).join('|') !==
                                    specs.map((s) => s.labels.join()).join('|')) {
      for (const c of view.charts) c.graph.destroy();
      view.charts = [];
      grid.replaceChildren();
      for (const spec of specs) {
        const card = el('section', { class: 'card', id: 'chart-' + spec.id },
                        el('h2', { text: spec.title }),
                        el('div', { class: 'legend' }),
                        el('div', { class: 'plot' }),
                        el('p', { class: 'empty hidden', text: spec.empty || 'No data.' }));
        grid.append(card);
        const graph = makeChart(spec, card);
        view.charts.push({ id: spec.id, labels: spec.labels, graph: graph, card: card });
      }
    }
    for (let i = 0; i < specs.length; i++) {
      const spec = specs[i];
      const chart = view.charts[i];
      chart.card.querySelector('h2').textContent = spec.title;
      const present = hasData(spec);
      chart.card.classList.toggle('nodata', !present);
      chart.card.querySelector('.empty').classList.toggle('hidden', present);
      chart.graph.updateOptions({ file: spec.rows, dateWindow: view.range,
                                  underlayCallback: chart.graph.getOption('underlayCallback') });
      if (spec.labels.length > 1) chart.graph.setAnnotations(annotationsFor(spec.labels[1], spec.rows));
    }
  }

  // ---- attention heatmaps (canvas) ----------------------------------------

  function layerIds() {
    const ids = new Set();
    for (const p of view.points) for (const l of p.layers) ids.add(l.layer);
    return Array.from(ids).sort((a, b) => a - b);
  }

  // A perceptually ordered blue-to-yellow scale (viridis stops).
  const STOPS = [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]];
  function color(t) {
    t = Math.min(1, Math.max(0, t));
    const f = t * (STOPS.length - 1);
    const i = Math.min(STOPS.length - 2, Math.floor(f));
    const u = f - i;
    const c = STOPS[i].map((v, k) => Math.round(v + (STOPS[i + 1][k] - v) * u));
    return 'rgb(' + c.join(',') + ')';
  }

  function visiblePoints() {
    if (!view.range) return view.points;
    return view.points.filter((p) => p.step >= view.range[0] && p.step <= view.range[1]);
  }

  function setupCanvas(canvas, cssWidth, cssHeight) {
    const ratio = window.devicePixelRatio || 1;
    canvas.style.width = cssWidth + 'px';
    canvas.style.height = cssHeight + 'px';
    canvas.width = Math.round(cssWidth * ratio);
    canvas.height = Math.round(cssHeight * ratio);
    const ctx = canvas.getContext('2d');
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.clearRect(0, 0, cssWidth, cssHeight);
    ctx.font = '11px system-ui, sans-serif';
    return ctx;
  }

  function drawScale(ctx, x, y, w, lo, hi) {
    for (let i = 0; i < w; i++) {
      ctx.fillStyle = color(i / (w - 1));
      ctx.fillRect(x + i, y, 1, 8);
    }
    ctx.fillStyle = '#444';
    ctx.textAlign = 'left';
    ctx.fillText(fmt(lo, 2), x, y + 19);
    ctx.textAlign = 'right';
    ctx.fillText(fmt(hi, 2) + ' nats', x + w, y + 19);
  }

  function drawHeatmap() {
    const card = document.getElementById('heatmap-card');
    if (!card) return;
    const layers = layerIds();
    const canvas = document.getElementById('heatmap');
    const note = card.querySelector('.empty');
    if (layers.length === 0) {
      card.classList.add('nodata');
      canvas.classList.add('hidden');
      note.classList.remove('hidden');
      drawHeads();
      return;
    }
    card.classList.remove('nodata');
    canvas.classList.remove('hidden');
    note.classList.add('hidden');
    const points = visiblePoints();
    const left = 44;
    const bottom = 46;
    const width = Math.max(300, card.clientWidth - 24);
    const cell = Math.max(4, Math.min(18, Math.floor(320 / layers.length)));
    const height = layers.length * cell + bottom;
    const ctx = setupCanvas(canvas, width, height);
    let lo = Infinity;
    let hi = -Infinity;
    for (const p of points) {
      for (const l of p.layers) {
        lo = Math.min(lo, l.mean);
        hi = Math.max(hi, l.mean);
      }
    }
    if (!(hi > lo)) hi = lo + 1e-9;
    const plotW = width - left - 8;
    const x0 = points.length ? points[0].step : 0;
    const x1 = points.length ? points[points.length - 1].step : 1;
    const xOf = (step) => left + (x1 > x0 ? (step - x0) / (x1 - x0) : 0) * plotW;
    const row = new Map(layers.map((id, i) => [id, i]));
    for (let i = 0; i < points.length; i++) {
      const p = points[i];
      const a = i === 0 ? xOf(p.step) : (xOf(points[i - 1].step) + xOf(p.step)) / 2;
      const b = i + 1 < points.length ? (xOf(p.step) + xOf(points[i + 1].step)) / 2 : left + plotW;
      for (const l of p.layers) {
        ctx.fillStyle = color((l.mean - lo) / (hi - lo));
        ctx.fillRect(a, row.get(l.layer) * cell, Math.max(1, b - a + 0.5), cell);
      }
    }
    canvas.dataset.cells = [left, 0, Math.round(plotW), layers.length * cell].join(',');
    if (view.step !== null && view.step >= x0 && view.step <= x1) {
      ctx.strokeStyle = '#fff';
      ctx.lineWidth = 2;
      ctx.strokeRect(xOf(view.step) - 1, 0, 2, layers.length * cell);
    }
    ctx.fillStyle = '#444';
    ctx.textAlign = 'right';
    ctx.textBaseline = 'middle';
    const every = Math.ceil(12 / cell);
    layers.forEach((id, i) => {
      if (i % every === 0) ctx.fillText('L' + id, left - 4, i * cell + cell / 2);
    });
    ctx.textBaseline = 'alphabetic';
    ctx.textAlign = 'center';
    for (let k = 0; k <= 4; k++) {
      const step = Math.round(x0 + (x1 - x0) * k / 4);
      ctx.fillText(String(step), Math.min(Math.max(xOf(step), left + 16), left + plotW - 16),
                   layers.length * cell + 13);
    }
    drawScale(ctx, left + plotW - 160, layers.length * cell + 18, 160, lo, hi);
    canvas.onclick = (event) => {
      const rect = canvas.getBoundingClientRect();
      const x = event.clientX - rect.left;
      if (x < left || points.length === 0) return;
      chooseStep(x0 + (x - left) / plotW * (x1 - x0));
    };
    canvas.onmousemove = (event) => {
      const rect = canvas.getBoundingClientRect();
      const x = event.clientX - rect.left;
      const y = event.clientY - rect.top;
      const hover = card.querySelector('.hover');
      const layer = layers[Math.floor(y / cell)];
      if (x < left || layer === undefined || points.length === 0) {
        hover.textContent = '';
        return;
      }
      const p = nearestPoint(x0 + (x - left) / plotW * (x1 - x0), points);
      const l = p.layers.find((m) => m.layer === layer);
      hover.textContent = 'layer ' + layer + ' · step ' + p.step + ' · ' +
                          (l ? fmt(l.mean) + ' nats, head variance ' + fmt(l.variance) : 'no data');
    };
    drawHeads();
  }

  function nearestPoint(step, points) {
    let best = points[0];
    for (const p of points) if (Math.abs(p.step - step) < Math.abs(best.step - step)) best = p;
    return best;
  }

  function chooseStep(step) {
    const withHeads = view.points.filter((p) => p.layers.some((l) => l.heads.length > 0));
    const pool = withHeads.length ? withHeads : view.points;
    if (pool.length === 0) return;
    view.step = nearestPoint(step, pool).step;
    writeUrl();
    drawHeatmap();
  }

  function drawHeads() {
    const card = document.getElementById('heads-card');
    if (!card) return;
    const canvas = document.getElementById('heads');
    const title = card.querySelector('h2');
    const note = card.querySelector('.empty');
    const withHeads = view.points.filter((p) => p.layers.some((l) => l.heads.length > 0));
    if (withHeads.length === 0) {
      canvas.classList.add('hidden');
      note.classList.remove('hidden');
      note.textContent = view.points.some((p) => p.layers.length)
          ? 'Per-head entropies are kept for the most recent steps only; none in this history.'
          : 'No attention data reported for this run.';
      title.textContent = 'Per-head attention entropy';
      return;
    }
    const p = view.step === null ? withHeads[withHeads.length - 1] : nearestPoint(view.step, withHeads);
    title.textContent = 'Per-head attention entropy at step ' + p.step +
                        ' (click a chart or the heatmap to choose a step; kept for the newest ' +
                        withHeads.length + ' points)';
    canvas.classList.remove('hidden');
    note.classList.add('hidden');
    const layers = p.layers.filter((l) => l.heads.length > 0);
    const heads = Math.max(...layers.map((l) => l.heads.length));
    const left = 44;
    const bottom = 46;
    const width = Math.max(300, card.clientWidth - 24);
    const cellW = Math.max(6, Math.min(28, Math.floor((width - left - 8) / heads)));
    const cellH = Math.max(4, Math.min(18, Math.floor(320 / layers.length)));
    const height = layers.length * cellH + bottom;
    const ctx = setupCanvas(canvas, width, height);
    let lo = Infinity;
    let hi = -Infinity;
    for (const l of layers) {
      for (const h of l.heads) {
        lo = Math.min(lo, h);
        hi = Math.max(hi, h);
      }
    }
    if (!(hi > lo)) hi = lo + 1e-9;
    layers.forEach((l, i) => {
      l.heads.forEach((h, j) => {
        ctx.fillStyle = color((h - lo) / (hi - lo));
        ctx.fillRect(left + j * cellW, i * cellH, cellW - 1, cellH - 1);
      });
    });
    canvas.dataset.cells = [left, 0, heads * cellW, layers.length * cellH].join(',');
    ctx.fillStyle = '#444';
    ctx.textAlign = 'right';
    ctx.textBaseline = 'middle';
    const every = Math.ceil(12 / cellH);
    layers.forEach((l, i) => {
      if (i % every === 0) ctx.fillText('L' + l.layer, left - 4, i * cellH + cellH / 2);
    });
    ctx.textBaseline = 'alphabetic';
    ctx.textAlign = 'center';
    const everyHead = Math.ceil(20 / cellW);
    for (let j = 0; j < heads; j += everyHead) {
      ctx.fillText('h' + j, left + j * cellW + cellW / 2, layers.length * cellH + 13);
    }
    drawScale(ctx, width - 168, layers.length * cellH + 18, 160, lo, hi);
    canvas.onmousemove = (event) => {
      const rect = canvas.getBoundingClientRect();
      const i = Math.floor((event.clientY - rect.top) / cellH);
      const j = Math.floor((event.clientX - rect.left - left) / cellW);
      const hover = card.querySelector('.hover');
      const l = layers[i];
      hover.textContent = l && j >= 0 && j < l.heads.length
          ? 'layer ' + l.layer + ' head ' + j + ' · ' + fmt(l.heads[j]) + ' nats' : '';
    };
  }

  // ---- run header ----------------------------------------------------------

  function renderHeader() {
    const s = view.status;
    const verdict = s.verdict || {};
    const header = document.getElementById('run-header');
    const status = liveness(s);
    header.replaceChildren(
        el('h1', {}, s.runId, ' ', badge(verdict.state)),
        el('p', { class: 'meta' },
           'step ' + num(s.lastStep), ' · world size ' + num(s.worldSize),
           ' · last report ' + ageText(age(s.lastReportTime)), ' · ',
           el('span', { class: 'status status-' + status, text: status }),
           ' · reports ' + num(s.reportsAccepted) + ' accepted, ' + num(s.reportsRejected) +
           ' rejected, ' + num(s.reportsDuplicate) + ' duplicate, ' + num(s.reportsLate) + ' late'),
        verdict.reason ? el('p', { class: 'verdict' },
                            el('b', { text: stateOf(verdict.state).label }),
                            ' since step ' + num(verdict.sinceStep) + ': ' + verdict.reason,
                            verdict.recommendedAction && verdict.recommendedAction !== 'None.'
                                ? el('span', { class: 'action',
                                               text: ' → ' + verdict.recommendedAction })
                                : null)
                       : null);
    renderAnomalyTable();
    renderRangeLine();
  }

  function renderAnomalyTable() {
    const box = document.getElementById('anomalies');
    const active = new Set(((view.status && view.status.anomalies) || []).map(anomalyKey));
    const all = allAnomalies();
    box.replaceChildren(el('h2', { text: 'Anomalies (' + active.size + ' active, ' + all.length +
                                          ' fired)' }));
    if (all.length === 0) {
      box.append(el('p', { class: 'muted', text: 'No anomaly fired in this run.' }));
      return;
    }
    const table = el('table', { class: 'anomaly-table' },
                     el('thead', {}, el('tr', {}, ...['', 'Pattern', 'Severity', 'Subject',
                                                      'Since step', 'Reason', 'Recommended action']
                                                       .map((h) => el('th', { text: h })))));
    const tbody = el('tbody');
    for (const a of all.slice().reverse()) {
      const isActive = active.has(anomalyKey(a));
      tbody.append(el('tr', { class: 'anomaly-row' + (isActive ? ' active' : ''),
                              'data-anomaly': anomalyKey(a), onclick: () => selectAnomaly(a),
                              title: 'Click to zoom to step ' + num(a.sinceStep) },
                      el('td', { text: isActive ? 'active' : 'ended', class: 'muted' }),
                      el('td', { class: 'pattern', text: patternName(a) }),
                      el('td', { class: 'sev-' + (a.severity || '').toLowerCase(),
                                 text: (a.severity || '').toLowerCase() }),
                      el('td', { text: a.subject || '' }),
                      el('td', { class: 'num', text: num(a.sinceStep) }),
                      el('td', { class: 'reason', text: a.reason || '' }),
                      el('td', { class: 'action', text: a.recommendedAction || '' })));
    }
    table.append(tbody);
    box.append(table);
  }

  function renderRangeLine() {
    const line = document.getElementById('range');
    if (!line) return;
    const total = view.timeline ? num(view.timeline.stepsRecorded) : view.points.length;
    const parts = [
      (view.range ? 'Steps ' + Math.floor(view.range[0]) + '–' + Math.ceil(view.range[1])
                  : 'Whole run') +
          ' · ' + view.points.length + ' points for ' + total +
          ' steps (older steps are bucket means) · drag on a chart to zoom, double-click or Esc ' +
          'to reset · background: ',
    ];
    const seen = new Set();
    for (const [, , state] of stateSpans()) {
      if (seen.has(state)) continue;
      seen.add(state);
      parts.push(el('span', { class: 'swatch', style: 'background:' + stateOf(state).color + '33' },
                    stateOf(state).label));
    }
    if (view.range) {
      parts.push(el('button', { type: 'button', text: 'Reset zoom', onclick: () => setRange(null) }));
    }
    line.replaceChildren(...parts);
  }

  // ---- data ----------------------------------------------------------------

  function toPoints(history) {
    return (history || []).map((s) => ({
      step: num(s.step),
      tokenCount: num(s.tokenCount),
      mean: num(s.entropyMean), p10: num(s.entropyP10), p90: num(s.entropyP90),
      normalized: num(s.normalizedEntropyMean), highRatio: num(s.highEntropyRatio),
      hasGrad: !!s.hasGradNorm, grad: num(s.gradNorm),
      hasLoss: !!s.hasLoss, loss: num(s.loss), lr: num(s.learningRate),
      generated: num(s.generatedEntropyMean), generatedCount: num(s.generatedTokenCount),
      scalars: s.scalars || {},
      layers: (s.layers || []).map((l) => ({
        layer: num(l.layer), mean: num(l.meanEntropy), variance: num(l.headVariance),
        heads: (l.headMeanEntropy || []).map(Number),
      })),
    }));
  }

  function render() {
    renderHeader();
    renderCharts();
    drawHeatmap();
  }

  function runSkeleton() {
    document.getElementById('main').replaceChildren(
        el('div', { id: 'run-header' }),
        el('section', { id: 'anomalies', class: 'card wide' }),
        el('p', { id: 'range', class: 'muted' }),
        el('div', { id: 'charts', class: 'grid' }),
        el('div', { class: 'grid' },
           el('section', { class: 'card', id: 'heatmap-card' },
              el('h2', { text: 'Attention entropy per layer (layers × steps)' }),
              el('canvas', { id: 'heatmap' }),
              el('p', { class: 'empty hidden', text: 'No attention data reported for this run.' }),
              el('p', { class: 'hover muted' })),
           el('section', { class: 'card', id: 'heads-card' },
              el('h2', { text: 'Per-head attention entropy' }),
              el('canvas', { id: 'heads' }),
              el('p', { class: 'empty hidden' }),
              el('p', { class: 'hover muted' }))));
  }

  // Takes a RunStatus and its timeline. With `partial`, status.history holds
  // only the newest points, which replace and extend the ones already drawn.
  function accept(status, timeline, partial) {
    const fresh = toPoints(status.history);
    if (partial && view.points.length && fresh.length) {
      const first = fresh[0].step;
      view.points = view.points.filter((p) => p.step < first).concat(fresh);
    } else {
      view.points = fresh;
    }
    view.status = status;
    view.timeline = timeline;
    document.title = status.runId + ' · entrowatch';
  }

  async function runPage() {
    readUrl();
    runSkeleton();
    const url = '/api/v1/runs/' + encodeURIComponent(view.runId);
    let failures = 0;
    let refreshes = 0;
    // Live updates fetch the newest points only; a full reload now and then
    // picks up the re-bucketed older history.
    const refresh = async () => {
      const partial = refreshes % 15 !== 0 && view.points.length > 0;
      refreshes++;
      try {
        const [status, timeline] = await Promise.all([
          getJson(url + (partial ? '?history=64' : '')), getJson(url + '/timeline')]);
        accept(status, timeline, partial);
        render();
        clearError();
        failures = 0;
      } catch (e) {
        failures++;
        showError((e.status === 404 ? 'This run is no longer tracked (it expired or the daemon ' +
                                      'restarted without a state_dir): '
                                    : 'Cannot refresh: ') + e.message);
      }
      markReady();
    };
    await refresh();
    setInterval(() => {
      if (!document.hidden && !(view.status && view.status.finished && failures === 0)) refresh();
    }, REFRESH_MS);
  }

  function reportPage() {
    readUrl();
    runSkeleton();
    const status = JSON.parse(document.getElementById('run-data').textContent);
    const timeline = JSON.parse(document.getElementById('timeline-data').textContent);
    accept(status, timeline, false);
    render();
    markReady();
  }

  document.addEventListener('keydown', (event) => {
    if (event.key === 'Escape' && view.range) setRange(null);
  });
  window.addEventListener('resize', () => drawHeatmap());

  if (page === 'runs') runsPage();
  else if (page === 'run') runPage();
  else if (page === 'report') reportPage();
  else markReady();
})();
