// Reading the checkpoint test case's progress from `kubectl logs --timestamps`.
// Each line is "<RFC 3339 time with ns> <what the container wrote>", the time
// being when the runtime received the line. A restored container's log starts
// with the original's lines (containerd copies the log into the checkpoint and
// back), so the hand-over is the largest gap between consecutive lines.

export interface LogLine {
  /** The runtime's timestamp, in ms since the epoch. */
  at: number;
  /** The timestamp as written by the runtime. */
  stamp: string;
  text: string;
}

export interface Progress {
  /** Loop iterations done. */
  value: number;
  sum: number;
  /** The workload's own `date -u +%T` stamp (1 s resolution). */
  clock: string;
  origin: string;
  now: string;
}

/** Parses `kubectl logs --timestamps` output; lines without a timestamp are skipped. */
export function parseTimestamped(log: string): LogLine[] {
  const out: LogLine[] = [];
  for (const raw of log.split("\n")) {
    const m = /^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d) ?(.*)$/.exec(raw);
    if (!m) continue;
    // Date.parse wants at most milliseconds.
    const frac = (m[2] ?? ".0").slice(0, 4);
    const at = Date.parse(`${m[1]}${frac}${m[3]}`);
    if (Number.isNaN(at)) continue;
    out.push({ at, stamp: `${m[1]}${m[2] ?? ""}${m[3]}`, text: m[4] ?? "" });
  }
  return out;
}

/** One progress line of manifests/examples/testcase-checkpoint-cpu-limit.yaml. */
export function parseProgress(text: string): Progress | undefined {
  const m = /^(\d\d:\d\d:\d\d) progress (\d+), sum (\d+), started in (\S+), now in (\S+)$/.exec(
    text,
  );
  if (!m) return undefined;
  return {
    clock: m[1] ?? "",
    value: Number(m[2]),
    sum: Number(m[3]),
    origin: m[4] ?? "",
    now: m[5] ?? "",
  };
}

export interface Handover {
  /** Index in the lines of the first line after the largest gap. */
  index: number;
  /** The last line before the gap: the last one the checkpoint carried. */
  before: LogLine;
  /** The first line after the gap: the first one the restored process wrote. */
  after: LogLine;
  gapMs: number;
  /** The second-largest gap, to show the largest one stands out. */
  nextLargestGapMs: number;
}

/** The largest gap between consecutive lines, or undefined with fewer than two lines. */
export function findHandover(lines: LogLine[]): Handover | undefined {
  let best = -1;
  let gap = -1;
  let next = 0;
  for (let i = 1; i < lines.length; i++) {
    const g = (lines[i]?.at ?? 0) - (lines[i - 1]?.at ?? 0);
    if (g > gap) {
      next = Math.max(next, gap);
      gap = g;
      best = i;
    } else next = Math.max(next, g);
  }
  const before = lines[best - 1];
  const after = lines[best];
  if (best < 1 || !before || !after) return undefined;
  return { index: best, before, after, gapMs: gap, nextLargestGapMs: Math.max(0, next) };
}

/** What the workload prints when done: the sum of i^2 for i = 1..n, mod 1e9+7. */
export function expectedSum(n: number): number {
  const N = BigInt(n);
  return Number(((N * (N + 1n) * (2n * N + 1n)) / 6n) % 1_000_000_007n);
}
