import { access, mkdir, mkdtemp, rm, symlink, utimes, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { ArchiveError } from "./errors.ts";
import { deleteArchive, startArchiveSweeper, sweepArchives } from "./gc.ts";

let root: string;
let dir: string;
const exists = (p: string) =>
  access(p).then(
    () => true,
    () => false,
  );

beforeEach(async () => {
  root = await mkdtemp(join(tmpdir(), "edgeshift-gc-"));
  dir = join(root, "checkpoints");
  await mkdir(dir);
});
afterEach(async () => {
  await rm(root, { recursive: true, force: true });
});

async function file(name: string, ageSeconds: number, base = dir): Promise<string> {
  const p = join(base, name);
  await writeFile(p, "x");
  const t = Date.now() / 1000 - ageSeconds;
  await utimes(p, t, t);
  return p;
}

describe("deleteArchive", () => {
  it("deletes an archive and is idempotent", async () => {
    const p = await file("checkpoint-a_b-c-2025-01-01T00:00:00Z.tar", 0);
    expect(await deleteArchive(dir, p)).toBe(true);
    expect(await exists(p)).toBe(false);
    expect(await deleteArchive(dir, p)).toBe(false);
  });

  it("refuses to delete anything outside the checkpoint directory", async () => {
    const outside = await file("checkpoint-x.tar", 0, root);
    await expect(deleteArchive(dir, outside)).rejects.toBeInstanceOf(ArchiveError);
    await symlink(outside, join(dir, "checkpoint-link.tar"));
    await expect(deleteArchive(dir, join(dir, "checkpoint-link.tar"))).rejects.toThrow(/outside/);
    expect(await exists(outside)).toBe(true);
  });
});

describe("sweepArchives", () => {
  it("deletes only kubelet archives older than the age, never symlinks or other files", async () => {
    const old = await file("checkpoint-old_ns-app-2025-01-01T00:00:00Z.tar", 7200);
    const fresh = await file("checkpoint-new_ns-app-2025-01-01T01:00:00Z.tar", 60);
    const other = await file("notes.txt", 7200);
    const outside = await file("checkpoint-victim.tar", 7200, root);
    await symlink(outside, join(dir, "checkpoint-symlink.tar"));
    const res = await sweepArchives({ checkpointDir: dir, maxAgeMs: 3600_000 });
    expect(res.deleted).toEqual([old]);
    expect(await exists(old)).toBe(false);
    for (const kept of [fresh, other, outside, join(dir, "checkpoint-symlink.tar")]) {
      expect(await exists(kept)).toBe(true);
    }
  });

  it("skips archives the caller still uses", async () => {
    const busy = await file("checkpoint-busy_ns-app-x.tar", 7200);
    const res = await sweepArchives({
      checkpointDir: dir,
      maxAgeMs: 1000,
      exclude: (p) => p === busy,
    });
    expect(res.deleted).toEqual([]);
    expect(await exists(busy)).toBe(true);
  });

  it("tolerates a checkpoint directory that does not exist yet", async () => {
    const res = await sweepArchives({ checkpointDir: join(root, "nope"), maxAgeMs: 0 });
    expect(res).toEqual({ deleted: [], kept: 0, failed: [] });
  });

  it("runs periodically from a sweeper", async () => {
    const sweeper = startArchiveSweeper({ checkpointDir: dir, maxAgeMs: 3600_000, intervalMs: 20 });
    try {
      const late = await file("checkpoint-late_ns-app-x.tar", 7200);
      await expect.poll(() => exists(late), { timeout: 2000, interval: 20 }).toBe(false);
    } finally {
      sweeper.stop();
    }
  });
});
