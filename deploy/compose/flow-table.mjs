// Prints the agent's and the gateway's flow records side by side, from the
// JSON lines each daemon writes to its container's stdout (`docker logs`).
// Usage: node flow-table.mjs <agent.log> <gateway.log>
import { readFileSync } from 'node:fs';

function records(file) {
  const out = [];
  for (const line of readFileSync(file, 'utf8').split('\n')) {
    const i = line.indexOf('{');
    if (i < 0) continue;
    try {
      const r = JSON.parse(line.slice(i));
      if (r.event === 'flow_close' && (r.protocol === 'tcp' || r.protocol === 'udp')) out.push(r);
    } catch {
      // a daemon log line that is not JSON
    }
  }
  return out;
}
const hostPort = (a, p) => (a.includes(':') ? `[${a}]:${p}` : `${a}:${p}`);
const pad = (s, n) => String(s).padEnd(n);
const rpad = (s, n) => String(s).padStart(n);
const key = (r) => `${r.protocol} ${r.src_addr}:${r.src_port}>${r.dst_addr}:${r.dst_port}`;

const [agentFile, gatewayFile] = process.argv.slice(2);
const agent = records(agentFile);
const gw = new Map(records(gatewayFile).map((r) => [key(r), r]));
console.log(`  ${pad('flow', 46)} ${rpad('agent sent', 11)} ${rpad('agent recv', 11)} ${rpad('gw sent', 11)} ${rpad('gw recv', 11)}  ${pad('close', 6)} identity (gateway view)`);
let both = 0;
for (const a of agent) {
  const g = gw.get(key(a));
  if (g) both++;
  const flow = `${a.protocol} ${hostPort(a.src_addr, a.src_port)} -> ${hostPort(a.dst_addr, a.dst_port)}`;
  console.log(`  ${pad(flow, 46)} ${rpad(a.sent_bytes ?? '-', 11)} ${rpad(a.received_bytes ?? '-', 11)} ${rpad(g?.sent_bytes ?? '-', 11)} ${rpad(g?.received_bytes ?? '-', 11)}  ${pad(a.close_reason ?? '-', 6)} ${g?.peer_identity ?? '(not seen)'}`);
}
console.log(`  ${agent.length} closed flows at the agent, ${both} of them also recorded by the gateway`);
if (both === 0) process.exitCode = 1;
