// The agent's ledger of the checkpoints it asked the kubelet for, kept inside
// the checkpoint directory so it lives exactly as long as the archives. The
// sweeper deletes only archives a ledger entry accounts for: a checkpoint an
// admin took on the node (forensics) is not ours to delete.
import { randomUUID } from "node:crypto";
import { lstat, mkdir, open, readdir, rename, rm } from "node:fs/promises";
import { join } from "node:path";
import type { ArchiveOwner } from "./match.ts";

/** A hidden folder: the kubelet's archives are checkpoint-*.tar beside it. */
export const REQUESTS_DIR = ".edgeshift-requests";

export interface CheckpointRequest extends ArchiveOwner {
  /** Epoch ms the agent called the kubelet. */
  requestedAt: number;
  /** The ledger entry. */
  path: string;
}

// Kubernetes names cannot hold '_', so <namespace>_<pod>_<container>_<epochMs> splits one way only.
const ENTRY = /^([^_/]+)_([^_/]+)_([^_/]+)_(\d+)\.json$/;
const PARTIAL = /^\..+\.tmp$/;

export function requestFileName(owner: ArchiveOwner, requestedAt: number): string {
  for (const v of [owner.namespace, owner.pod, owner.container]) {
    if (!/^[a-z0-9]([a-z0-9.-]*[a-z0-9])?$/.test(v)) {
      throw new Error(`${JSON.stringify(v)} is not a Kubernetes name`);
    }
  }
  return `${owner.namespace}_${owner.pod}_${owner.container}_${Math.floor(requestedAt)}.json`;
}

export function parseRequestFileName(name: string): Omit<CheckpointRequest, "path"> | undefined {
  const m = ENTRY.exec(name);
  if (!m) return undefined;
  const [, namespace = "", pod = "", container = "", at = ""] = m;
  return { namespace, pod, container, requestedAt: Number(at) };
}

async function ledgerDir(checkpointDir: string, create: boolean): Promise<string | undefined> {
  const dir = join(checkpointDir, REQUESTS_DIR);
  if (create) await mkdir(dir, { mode: 0o700, recursive: true });
  let st: Awaited<ReturnType<typeof lstat>>;
  try {
    st = await lstat(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw err;
  }
  // A symlink here would move the ledger (and what it lets the sweeper delete) elsewhere.
  if (!st.isDirectory()) throw new Error(`${dir} is not a directory`);
  return dir;
}

/** Records that the agent is about to ask the kubelet to checkpoint `owner` (atomically, mode 0600). */
export async function recordCheckpointRequest(
  checkpointDir: string,
  owner: ArchiveOwner,
  requestedAt: number = Date.now(),
): Promise<CheckpointRequest> {
  const name = requestFileName(owner, requestedAt);
  const dir = (await ledgerDir(checkpointDir, true)) as string;
  const path = join(dir, name);
  const tmp = join(dir, `.${name}.${randomUUID()}.tmp`);
  const fh = await open(tmp, "wx", 0o600);
  try {
    const { namespace, pod, container } = owner;
    await fh.writeFile(
      `${JSON.stringify({ namespace, pod, container, requestedAt: new Date(requestedAt).toISOString() })}\n`,
    );
    await fh.sync();
    await fh.close();
    await rename(tmp, path);
  } catch (err) {
    await fh.close().catch(() => {});
    await rm(tmp, { force: true });
    throw err;
  }
  return {
    namespace: owner.namespace,
    pod: owner.pod,
    container: owner.container,
    requestedAt,
    path,
  };
}

export interface Ledger {
  requests: CheckpointRequest[];
  /** Temporary files a crash left mid-write. */
  partials: { path: string; mtimeMs: number }[];
}

/** The recorded requests; an absent ledger is an empty one. */
export async function readLedger(checkpointDir: string): Promise<Ledger> {
  const out: Ledger = { requests: [], partials: [] };
  const dir = await ledgerDir(checkpointDir, false);
  if (!dir) return out;
  for (const name of await readdir(dir)) {
    const path = join(dir, name);
    const r = parseRequestFileName(name);
    if (r) out.requests.push({ ...r, path });
    else if (PARTIAL.test(name)) {
      const st = await lstat(path).catch(() => undefined);
      if (st?.isFile()) out.partials.push({ path, mtimeMs: st.mtimeMs });
    }
  }
  return out;
}
