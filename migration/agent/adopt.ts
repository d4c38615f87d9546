// A restarted agent adopts the archive an interrupted kubelet checkpoint left,
// instead of checkpointing (and freezing the container) a second time.
import { lstat, readdir } from "node:fs/promises";
import { join } from "node:path";
import { type Logger, pino } from "pino";
import { ArchiveError } from "../archive/errors.ts";
import { type ArchiveOwner, matchArchive } from "../archive/match.ts";
import { type ArchiveInfo, validateArchive } from "../archive/validate.ts";

const silent = pino({ level: "silent" });

export interface AdoptTarget extends ArchiveOwner {
  /** Epoch ms the Migration's checkpoint started. */
  since: number;
}

/**
 * The newest valid archive in `checkpointDir` that holds the target container
 * by its own metadata and was written since the checkpoint started. Candidates
 * are the kubelet's archives of pod names `checkpoint-<pod>_…` (Kubernetes
 * names cannot hold '_'); the rest of the name is ambiguous and not trusted.
 */
export async function findAdoptableArchive(
  checkpointDir: string,
  t: AdoptTarget,
  opts: { logger?: Logger } = {},
): Promise<ArchiveInfo | undefined> {
  const log = opts.logger ?? silent;
  const prefix = `checkpoint-${t.pod}_`;
  let names: string[];
  try {
    names = await readdir(checkpointDir);
  } catch {
    return undefined;
  }
  const candidates: { path: string; mtime: number }[] = [];
  for (const n of names) {
    if (!n.startsWith(prefix) || !n.endsWith(".tar")) continue;
    const path = join(checkpointDir, n);
    const st = await lstat(path).catch(() => undefined);
    // Status timestamps have whole seconds.
    if (!st?.isFile() || st.mtimeMs < t.since - 1000) continue;
    candidates.push({ path, mtime: st.mtimeMs });
  }
  candidates.sort((a, b) => b.mtime - a.mtime);
  for (const c of candidates) {
    let info: ArchiveInfo;
    try {
      info = await validateArchive(c.path, { checkpointDir });
    } catch (err) {
      if (!(err instanceof ArchiveError)) throw err;
      log.debug(
        { archive: c.path, err },
        "Skipped an invalid archive while looking for one to adopt",
      );
      continue;
    }
    const mismatch = matchArchive(info.metadata, t);
    if (!mismatch) return info;
    log.debug({ archive: c.path, mismatch }, "Skipped another container's archive");
  }
  return undefined;
}
