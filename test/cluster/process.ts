import { type ChildProcess, spawn } from "node:child_process";
import { createWriteStream } from "node:fs";
import { readFile } from "node:fs/promises";
import { createServer } from "node:net";
import { join } from "node:path";

/** A child process of the harness whose output goes to a log file. */
export interface Managed {
  name: string;
  child: ChildProcess;
  logPath: string;
  exited: Promise<number | null>;
}

/**
 * Starts a long-running helper process. It is wrapped in `setpriv --pdeathsig KILL`
 * so the kernel kills it if the harness dies without tearing down (crash, kill -9,
 * an interrupted test run): nothing is left behind.
 */
export function startProcess(
  name: string,
  command: string,
  args: string[],
  opts: { logDir: string; env?: NodeJS.ProcessEnv; cwd?: string },
): Managed {
  const logPath = join(opts.logDir, `${name}.log`);
  const log = createWriteStream(logPath, { flags: "a" });
  const child = spawn("setpriv", ["--pdeathsig", "KILL", "--", command, ...args], {
    cwd: opts.cwd,
    env: opts.env ?? process.env,
    stdio: ["ignore", "pipe", "pipe"],
  });
  child.stdout?.pipe(log, { end: false });
  child.stderr?.pipe(log, { end: false });
  const exited = new Promise<number | null>((resolve) => {
    child.once("exit", (code, signal) => {
      log.end();
      resolve(code ?? (signal ? 128 : null));
    });
    child.once("error", () => resolve(-1));
  });
  return { name, child, logPath, exited };
}

/** SIGTERM, then SIGKILL after `graceMs`; resolves once the process is gone. */
export async function stopProcess(p: Managed, graceMs = 5000): Promise<void> {
  if (p.child.exitCode !== null || p.child.signalCode !== null) return;
  p.child.kill("SIGTERM");
  const timer = setTimeout(() => p.child.kill("SIGKILL"), graceMs);
  await p.exited;
  clearTimeout(timer);
}

export async function tailLog(p: Managed, lines = 30): Promise<string> {
  try {
    const text = await readFile(p.logPath, "utf8");
    return text.split("\n").slice(-lines).join("\n");
  } catch {
    return "";
  }
}

/** A port that was free a moment ago on 127.0.0.1. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const addr = srv.address();
      const port = typeof addr === "object" && addr ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

/** Polls `check` until it returns a value other than undefined, or fails after `timeoutMs`. */
export async function waitUntil<T>(
  what: string,
  check: () => Promise<T | undefined>,
  opts: { timeoutMs: number; intervalMs?: number; alive?: Managed[] },
): Promise<T> {
  const deadline = Date.now() + opts.timeoutMs;
  let lastErr: unknown;
  for (;;) {
    for (const p of opts.alive ?? []) {
      if (p.child.exitCode !== null || p.child.signalCode !== null) {
        throw new Error(`${p.name} exited while waiting for ${what}:\n${await tailLog(p)}`);
      }
    }
    try {
      const v = await check();
      if (v !== undefined) return v;
    } catch (err) {
      lastErr = err;
    }
    if (Date.now() > deadline) {
      const reason = lastErr instanceof Error ? `: ${lastErr.message}` : "";
      throw new Error(`Timed out after ${opts.timeoutMs} ms waiting for ${what}${reason}`);
    }
    await new Promise((r) => setTimeout(r, opts.intervalMs ?? 200));
  }
}
