// Preloaded into bench/quic-datagram.mjs (node --import) by run.mjs, without
// changing that script: it watches the 'start' / 'stop' messages the bench's
// main thread sends its server worker and reports, per window, the CPU time
// (user + system, from /proc/self/task/*/stat) of every thread that used any.
// The main thread (tid = pid) is the client; the busiest other thread is the
// server worker. Prints one line per window: `cpu-window {json}`.
import { readdirSync, readFileSync } from 'node:fs';
import { isMainThread, Worker } from 'node:worker_threads';

const TICK_S = 0.01; // USER_HZ is 100 on Linux

function threadTicks() {
  const out = new Map();
  for (const tid of readdirSync('/proc/self/task')) {
    try {
      const stat = readFileSync(`/proc/self/task/${tid}/stat`, 'utf8');
      // Fields after the parenthesised name: state is field 3; utime 14, stime 15.
      const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      const name = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
      out.set(tid, { name, ticks: Number(rest[11]) + Number(rest[12]) });
    } catch {
      // the thread ended between readdir and read
    }
  }
  return out;
}

if (isMainThread) {
  const orig = Worker.prototype.postMessage;
  let t0 = null;
  let wall0 = 0;
  Worker.prototype.postMessage = function (msg, ...rest) {
    if (msg === 'start') {
      t0 = threadTicks();
      wall0 = performance.now();
    } else if (msg === 'stop' && t0) {
      const t1 = threadTicks();
      const threads = [];
      for (const [tid, v] of t1) {
        const d = v.ticks - (t0.get(tid)?.ticks ?? 0);
        if (d > 0) threads.push({ tid: Number(tid), name: v.name, cpuS: +(d * TICK_S).toFixed(2) });
      }
      threads.sort((a, b) => b.cpuS - a.cpuS);
      const client = threads.find((t) => t.tid === process.pid)?.cpuS ?? 0;
      const server = threads.find((t) => t.tid !== process.pid)?.cpuS ?? 0;
      const total = threads.reduce((s, t) => s + t.cpuS, 0);
      const wallS = (performance.now() - wall0) / 1000;
      console.log(`cpu-window ${JSON.stringify({ wallS: +wallS.toFixed(3), clientCpuS: client, serverCpuS: server, totalCpuS: +total.toFixed(2), threads })}`);
      t0 = null;
    }
    return orig.call(this, msg, ...rest);
  };
}
