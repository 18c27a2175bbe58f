// Hand-written SVG chart for bench/report/report.mjs: horizontal bars of TCP
// throughput per tunnel (1 and 4 streams), median as the bar, min–max as a
// whisker. No chart library; plain SVG 1.1 text.

const esc = (s) => String(s).replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

/** Gridline values 1-2-5 per decade covering [lo, hi]. */
function logTicks(lo, hi) {
  const out = [];
  for (let e = Math.floor(Math.log10(lo)); e <= Math.ceil(Math.log10(hi)); e++) {
    for (const m of [1, 2, 5]) {
      const v = m * 10 ** e;
      if (v >= lo * 0.999 && v <= hi * 1.001) out.push(v);
    }
  }
  return out;
}

/**
 * rows: [{name, tcp1: {med, lo, hi}, tcp4: {med, lo, hi}}] in Gbit/s, drawn
 * on a log scale (kernel paths are ~20x the userspace tunnels). `goal`
 * (Gbit/s, optional) is drawn as a dashed line. Returns the SVG document.
 */
export function tcpChartSvg(rows, title, goal) {
  const W = 780;
  const left = 120;
  const right = 70;
  const top = 64;
  const barH = 14;
  const rowH = 2 * barH + 16;
  const H = top + rows.length * rowH + 40;
  const series = [
    { key: 'tcp1', label: '1 stream', color: '#4e79a7' },
    { key: 'tcp4', label: '4 streams', color: '#f28e2b' },
  ];
  let max = 0;
  let min = Infinity;
  for (const r of rows) {
    for (const s of series) {
      if (Number.isFinite(r[s.key].hi)) max = Math.max(max, r[s.key].hi);
      if (Number.isFinite(r[s.key].lo) && r[s.key].lo > 0) min = Math.min(min, r[s.key].lo);
    }
  }
  if (!(max > 0)) max = 1;
  if (!Number.isFinite(min)) min = max / 10;
  const axisMin = 10 ** Math.floor(Math.log10(min));
  const axisMax = 10 ** Math.ceil(Math.log10(max));
  const span = Math.log10(axisMax) - Math.log10(axisMin);
  const x = (v) => left + ((W - left - right) * (Math.log10(Math.max(v, axisMin)) - Math.log10(axisMin))) / span;
  const out = [];
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="DejaVu Sans, Helvetica, Arial, sans-serif" font-size="12">`);
  out.push(`<rect x="0" y="0" width="${W}" height="${H}" fill="#ffffff"/>`);
  out.push(`<text x="${W / 2}" y="20" text-anchor="middle" font-size="14" font-weight="bold">${esc(title)}</text>`);
  // Legend.
  series.forEach((s, i) => {
    const lx = left + i * 110;
    out.push(`<rect x="${lx}" y="32" width="12" height="12" fill="${s.color}"/>`);
    out.push(`<text x="${lx + 18}" y="42">${esc(s.label)}</text>`);
  });
  // Grid and axis labels.
  for (const v of logTicks(axisMin, axisMax)) {
    const gx = x(v).toFixed(1);
    out.push(`<line x1="${gx}" y1="${top - 6}" x2="${gx}" y2="${H - 34}" stroke="#dddddd" stroke-width="1"/>`);
    out.push(`<text x="${gx}" y="${H - 20}" text-anchor="middle" fill="#555555">${+v.toFixed(2)}</text>`);
  }
  out.push(`<text x="${(left + W - right) / 2}" y="${H - 4}" text-anchor="middle" fill="#333333">Gbit/s (log scale)</text>`);
  if (Number.isFinite(goal) && goal > axisMin && goal < axisMax) {
    const gx = x(goal).toFixed(1);
    out.push(`<line x1="${gx}" y1="${top - 6}" x2="${gx}" y2="${H - 34}" stroke="#c0392b" stroke-width="1.5" stroke-dasharray="5,4"/>`);
    out.push(`<text x="${(+gx + 4).toFixed(1)}" y="${top - 10}" fill="#c0392b">mtun goal ${goal} Gbit/s</text>`);
  }
  rows.forEach((r, i) => {
    const y0 = top + i * rowH;
    const bold = r.name.startsWith('mtun') ? ' font-weight="bold"' : '';
    out.push(`<text x="${left - 8}" y="${y0 + barH + 4}" text-anchor="end"${bold}>${esc(r.name)}</text>`);
    series.forEach((s, k) => {
      const v = r[s.key];
      const y = y0 + k * (barH + 2);
      if (!Number.isFinite(v.med)) {
        out.push(`<text x="${left + 4}" y="${y + barH - 3}" fill="#999999">no data</text>`);
        return;
      }
      out.push(`<rect x="${left}" y="${y}" width="${Math.max(1, x(v.med) - left).toFixed(1)}" height="${barH}" fill="${s.color}"/>`);
      if (Number.isFinite(v.lo) && Number.isFinite(v.hi) && v.hi > v.lo) {
        const cy = y + barH / 2;
        out.push(`<line x1="${x(v.lo).toFixed(1)}" y1="${cy}" x2="${x(v.hi).toFixed(1)}" y2="${cy}" stroke="#222222" stroke-width="1.5"/>`);
        for (const e of [v.lo, v.hi]) out.push(`<line x1="${x(e).toFixed(1)}" y1="${cy - 4}" x2="${x(e).toFixed(1)}" y2="${cy + 4}" stroke="#222222" stroke-width="1.5"/>`);
      }
      const lx = Math.max(x(v.med), Number.isFinite(v.hi) ? x(v.hi) : 0) + 4;
      out.push(`<text x="${lx.toFixed(1)}" y="${y + barH - 3}" fill="#222222">${v.med.toFixed(2)}</text>`);
    });
  });
  out.push('</svg>');
  return out.join('\n') + '\n';
}
