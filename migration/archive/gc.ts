// The kubelet never deletes checkpoint archives, and they hold process memory:
// deleting them after a push, and sweeping what a crash left behind, is ours.
import { lstat, readdir, unlink } from "node:fs/promises";
import { join } from "node:path";
import { type Logger, pino } from "pino";
import { type ConfineOptions, confineArchivePath } from "./confine.ts";
import { ArchiveError } from "./errors.ts";

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
  /** Archives whose modification time is older than this are deleted. */
  maxAgeMs: number;
  /** Skip archives still in use (an upload in progress). */
  exclude?: (path: string) => boolean;
  now?: () => number;
  logger?: Logger;
}

export interface SweepResult {
  deleted: string[];
  kept: number;
  failed: { path: string; error: string }[];
}

/** One pass over the checkpoint directory: deletes expired kubelet archives (top level, regular files, never symlinks). */
export async function sweepArchives(opts: SweepOptions): Promise<SweepResult> {
  const log = opts.logger ?? silent;
  const now = (opts.now ?? Date.now)();
  const result: SweepResult = { deleted: [], kept: 0, failed: [] };
  let names: string[];
  try {
    names = await readdir(opts.checkpointDir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return result;
    throw err;
  }
  for (const name of names) {
    if (!ARCHIVE_NAME.test(name)) continue;
    const path = join(opts.checkpointDir, name);
    try {
      const st = await lstat(path);
      if (!st.isFile() || opts.exclude?.(path)) {
        result.kept++;
        continue;
      }
      if (now - st.mtimeMs <= opts.maxAgeMs) {
        result.kept++;
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
      result.failed.push({ path, error: (err as Error).message });
      log.warn({ err, archive: path }, "Failed to sweep checkpoint archive");
    }
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
