// Test workload: CPU-heavy, keeps its progress only in memory.
// A counter advances in a busy loop; every PROGRESS_INTERVAL_MS its value is
// written (atomically, by rename) to PROGRESS_FILE so a test can read it from
// outside. MEMORY_MB of incompressible data is held for the process's life to
// give the checkpoint a realistic size. A checkpoint/restore keeps the
// counter; a restart begins again at 0. Exits 0 after TARGET steps (0 = never).
// Plain JS (no TypeScript): it runs inside the container with bare node.
import { randomFillSync } from "node:crypto";
import { renameSync, writeFileSync } from "node:fs";

const env = process.env;
const memoryMb = Number(env.MEMORY_MB ?? "0");
const file = env.PROGRESS_FILE ?? "/progress/value";
const intervalMs = Number(env.PROGRESS_INTERVAL_MS ?? "100");
const target = Number(env.TARGET ?? "0");
// A pause between slices keeps the CPU for the rest of the machine when asked.
const idleMs = Number(env.IDLE_MS ?? "0");

const held = [];
for (let i = 0; i < memoryMb; i++) held.push(randomFillSync(Buffer.allocUnsafe(1 << 20)));

let counter = 0;
let checksum = 0;
const started = Date.now();

function publish() {
  const body = JSON.stringify({ counter, pid: process.pid, startedAt: started, heldMb: held.length });
  writeFileSync(`${file}.tmp`, body);
  renameSync(`${file}.tmp`, file);
}

function slice() {
  const until = Date.now() + intervalMs;
  while (Date.now() < until) {
    // Some arithmetic per step so the loop is CPU work, not just a clock read.
    for (let i = 0; i < 1000; i++) checksum = (checksum * 31 + i) % 1000003;
    counter++;
    if (target > 0 && counter >= target) break;
  }
  // Touch the held memory so it stays part of the working set.
  if (held.length > 0) held[counter % held.length][counter % 4096] = checksum & 0xff;
  publish();
  if (target > 0 && counter >= target) process.exit(0);
  setTimeout(slice, idleMs);
}

process.on("SIGTERM", () => process.exit(0));
publish();
slice();
