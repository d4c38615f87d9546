import { readFile } from "node:fs/promises";
import { join } from "node:path";
import type { ContainerSpec } from "./runtime.ts";

/** What the counter workload (workloads/counter.mjs) publishes. */
export interface CounterProgress {
  counter: number;
  /** PID inside the container: 1 as long as it runs as the container's init. */
  pid: number;
  /** Date.now() when the process started: a restored process keeps it, a restart does not. */
  startedAt: number;
  heldMb: number;
}

export interface CounterOptions {
  /** Host folder bind-mounted at /progress where the counter publishes. */
  progressDir: string;
  memoryMb?: number;
  /** Stop (exit 0) after this many steps; 0 = run until killed. */
  target?: number;
  intervalMs?: number;
}

/** The container-spec part that runs the counter workload with node. */
export function counterWorkload(o: CounterOptions): Pick<ContainerSpec, "args" | "env" | "mounts"> {
  return {
    args: ["/usr/local/bin/node", "/app/counter.mjs"],
    env: {
      MEMORY_MB: String(o.memoryMb ?? 0),
      TARGET: String(o.target ?? 0),
      PROGRESS_INTERVAL_MS: String(o.intervalMs ?? 100),
      PROGRESS_FILE: "/progress/value",
    },
    mounts: [{ source: o.progressDir, destination: "/progress" }],
  };
}

/** The last published progress, or undefined before the first publication. */
export async function readCounterProgress(
  progressDir: string,
): Promise<CounterProgress | undefined> {
  try {
    return JSON.parse(await readFile(join(progressDir, "value"), "utf8")) as CounterProgress;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw err;
  }
}
