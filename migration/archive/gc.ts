// The kubelet never deletes checkpoint archives, and they hold process memory:
// deleting them after a push, and sweeping what a crash left behind, is ours;
// archives someone else asked the kubelet for are theirs.
import { lstat, readdir, rm, unlink } from "node:fs/promises";
import { join } from "node:path";
import { type Logger, pino } from "pino";
import { type ConfineOptions, confineArchivePath } from "./confine.ts";
import { ArchiveError } from "./errors.ts";
import { matchArchive } from "./match.ts";
import { type CheckpointRequest, readLedger } from "./requests.ts";
import { validateArchive } from "./validate.ts";

const silent = pino({ level: "silent" });

/** Archive names the kubelet writes: checkpoint-<pod>_<namespace>-<container>-<RFC3339>.tar */
export const ARCHIVE_NAME = /^checkpoint-.+\.tar$/;

/**
 * Deletes one archive inside `checkpointDir`. Idempotent: an archive already
 * gone is not an error (returns false). A path outside the directory throws.
 */
export async function deleteArchive(
  checkpointDir: string,
  path: string,
  opts: ConfineOptions & { logger?: Logger } = {},
): Promise<boolean> {
  let real: string;
  try {
    real = await confineArchivePath(checkpointDir, path, opts);
  } catch (err) {
    if (err instanceof ArchiveError && err.reason === "NotFound") return false;
    throw err;
  }
  try {
    await unlink(real);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return false;
    throw err;
  }
  (opts.logger ?? silent).info({ archive: real }, "Deleted checkpoint archive");
  return true;
}

export interface SweepOptions {
  checkpointDir: string;
  /** Archives whose modification time is older than this are deleted, if the agent asked for them. */
  maxAgeMs: number;
  /**
   * How long after a recorded request the kubelet may still write its
   * archive: the checkpoint timeout + 60 s. Default 120 s (the default timeout).
   */
  requestWindowMs?: number;
  /** Skip archives still in use (an upload in progress). */
  exclude?: (path: string) => boolean;
  now?: () => number;
  logger?: Logger;
}

export interface SweepResult {
  deleted: string[];
  /** Archives left in place: fresh, in use, or not the agent's. */
  kept: number;
  failed: { path: string; error: string }[];
  /** Ledger entries removed: no archive of theirs can be left. */
  forgotten: string[];
}

export const DEFAULT_REQUEST_WINDOW_MS = 120_000;

/**
 * One pass over the checkpoint directory: deletes expired kubelet archives
 * (top level, regular files, never symlinks) that the agent asked for, as its
 * ledger of requests shows: the archive's own metadata names a requested
 * container and its mtime lies in that request's window. Any other archive
 * (an admin's forensic checkpoint, another pod's under a name alike) is kept.
 */
export async function sweepArchives(opts: SweepOptions): Promise<SweepResult> {
  const log = opts.logger ?? silent;
  const now = (opts.now ?? Date.now)();
  const windowMs = opts.requestWindowMs ?? DEFAULT_REQUEST_WINDOW_MS;
  const result: SweepResult = { deleted: [], kept: 0, failed: [], forgotten: [] };
  let names: string[];
  try {
    names = await readdir(opts.checkpointDir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return result;
    throw err;
  }
  const ledger = await readLedger(opts.checkpointDir);
  // The kubelet writes the archive after the request, within its timeout; status times have whole seconds.
  const inWindow = (r: CheckpointRequest, mtimeMs: number) =>
    mtimeMs >= r.requestedAt - 1000 && mtimeMs <= r.requestedAt + windowMs;
  const stillNeeded = new Set<CheckpointRequest>();
  const notOurs: string[] = [];
  for (const name of names) {
    if (!ARCHIVE_NAME.test(name)) continue;
    const path = join(opts.checkpointDir, name);
    let near: CheckpointRequest[] = [];
    try {
      const st = await lstat(path);
      if (!st.isFile()) {
        result.kept++;
        continue;
      }
      near = ledger.requests.filter((r) => inWindow(r, st.mtimeMs));
      if (opts.exclude?.(path) || now - st.mtimeMs <= opts.maxAgeMs) {
        result.kept++;
        for (const r of near) stillNeeded.add(r);
        continue;
      }
      const metadata =
        near.length > 0
          ? await validateArchive(path, { checkpointDir: opts.checkpointDir }).then(
              (info) => info.metadata,
              (err: unknown) => {
                if (err instanceof ArchiveError) return undefined;
                throw err;
              },
            )
          : undefined;
      if (!metadata || !near.some((r) => matchArchive(metadata, r) === undefined)) {
        result.kept++;
        notOurs.push(path);
        continue;
      }
      await unlink(path);
      result.deleted.push(path);
      log.info(
        { archive: path, ageSeconds: Math.round((now - st.mtimeMs) / 1000) },
        "Swept expired checkpoint archive",
      );
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") continue;
      for (const r of near) stillNeeded.add(r);
      result.failed.push({ path, error: (err as Error).message });
      log.warn({ err, archive: path }, "Failed to sweep checkpoint archive");
    }
  }
  // A request's archive is at most windowMs younger than the request, so past
  // maxAge + windowMs whatever it accounted for is gone or about to be.
  const forgetBefore = now - opts.maxAgeMs - windowMs;
  for (const r of ledger.requests) {
    if (r.requestedAt >= forgetBefore || stillNeeded.has(r)) continue;
    await rm(r.path, { force: true });
    result.forgotten.push(r.path);
  }
  for (const p of ledger.partials) {
    if (p.mtimeMs < forgetBefore) await rm(p.path, { force: true });
  }
  if (notOurs.length > 0) {
    log.debug({ archives: notOurs }, "Kept expired checkpoint archives the agent did not ask for");
  }
  return result;
}

export interface ArchiveSweeper {
  /** Runs a pass now (also what the timer does). */
  sweep(): Promise<SweepResult>;
  stop(): void;
}

/** Sweeps every `intervalMs` (and once at start). The timer does not keep the process alive. */
export function startArchiveSweeper(opts: SweepOptions & { intervalMs: number }): ArchiveSweeper {
  const log = opts.logger ?? silent;
  let running: Promise<SweepResult> | undefined;
  const sweep = () => {
    running ??= sweepArchives(opts).finally(() => {
      running = undefined;
    });
    return running;
  };
  const tick = () => {
    sweep().catch((err: unknown) => log.warn({ err }, "Failed to sweep checkpoint archives"));
  };
  const timer = setInterval(tick, opts.intervalMs);
  timer.unref();
  tick();
  return {
    sweep,
    stop: () => clearInterval(timer),
  };
}
