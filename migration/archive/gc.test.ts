import { access, mkdir, mkdtemp, readdir, rm, symlink, utimes, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { kubeletArchiveName, writeSyntheticArchive } from "../../test/support/synthetic-archive.ts";
import { ArchiveError } from "./errors.ts";
import { deleteArchive, startArchiveSweeper, sweepArchives } from "./gc.ts";
import { REQUESTS_DIR, recordCheckpointRequest } from "./requests.ts";

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

const NOW = Date.now();
const HOUR = 3600_000;
const WINDOW = 120_000;
type Who = { namespace: string; pod: string; container: string };

/** A CRI-O-layout archive holding `who`, under the kubelet's name for `named`, modified `agoMs` before NOW. */
async function archive(who: Who, agoMs: number, named: Who = who): Promise<string> {
  const at = new Date(NOW - agoMs);
  const path = join(dir, kubeletArchiveName(named, at));
  await writeSyntheticArchive(path, { ...who, image: "registry.example/app:1", dataBytes: 64 });
  await utimes(path, at, at);
  return path;
}

/** The agent asked the kubelet to checkpoint `who` `agoMs` before NOW. */
const requested = (who: Who, agoMs: number) => recordCheckpointRequest(dir, who, NOW - agoMs);

const sweep = (extra: Partial<Parameters<typeof sweepArchives>[0]> = {}) =>
  sweepArchives({
    checkpointDir: dir,
    maxAgeMs: HOUR,
    requestWindowMs: WINDOW,
    now: () => NOW,
    ...extra,
  });

const app = { namespace: "ns", pod: "old", container: "app" };

describe("sweepArchives", () => {
  it("deletes expired archives the agent asked for, never fresh ones, symlinks or other files", async () => {
    await requested(app, 2 * HOUR);
    const old = await archive(app, 2 * HOUR - 5000);
    const young = { ...app, pod: "new" };
    await requested(young, 60_000);
    const fresh = await archive(young, 55_000);
    const other = await file("notes.txt", 7200);
    const outside = await file("checkpoint-victim.tar", 7200, root);
    await symlink(outside, join(dir, "checkpoint-symlink.tar"));
    const res = await sweep();
    expect(res.deleted).toEqual([old]);
    expect(await exists(old)).toBe(false);
    for (const kept of [fresh, other, outside, join(dir, "checkpoint-symlink.tar")]) {
      expect(await exists(kept)).toBe(true);
    }
  });

  it("a forensic checkpoint nobody asked the agent for is kept", async () => {
    // An admin's curl to the kubelet: same kind of archive, same directory, no request.
    const forensic = await archive({ namespace: "ns", pod: "suspect", container: "app" }, 2 * HOUR);
    // The agent checkpointed this container once; the admin did again ten minutes later.
    await requested(app, 3 * HOUR);
    const ours = await archive(app, 3 * HOUR - 2000);
    const later = await archive(app, 3 * HOUR - 600_000);
    const res = await sweep();
    expect(res.deleted).toEqual([ours]);
    expect(res.kept).toBe(2);
    expect(await exists(forensic)).toBe(true);
    expect(await exists(later)).toBe(true);
  });

  it("tells apart archives the kubelet names alike by what they hold", async () => {
    // Pod web in namespace a container b-c, and pod web in namespace a-b container c:
    // both checkpoint-web_a-b-c-<time>.tar. The agent asked for the first only.
    const ours = { namespace: "a", pod: "web", container: "b-c" };
    const theirs = { namespace: "a-b", pod: "web", container: "c" };
    expect(kubeletArchiveName(ours, new Date(NOW))).toBe(kubeletArchiveName(theirs, new Date(NOW)));
    await requested(ours, 2 * HOUR);
    const mine = await archive(ours, 2 * HOUR - 3000);
    const notMine = await archive(theirs, 2 * HOUR - 5000);
    const res = await sweep();
    expect(res.deleted).toEqual([mine]);
    expect(await exists(notMine)).toBe(true);
  });

  it("keeps an expired archive it cannot read, even in a request's window", async () => {
    await requested(app, 2 * HOUR);
    const junk = await file(kubeletArchiveName(app, new Date(NOW - 2 * HOUR)), 2 * 3600 - 3);
    const res = await sweep();
    expect(res.deleted).toEqual([]);
    expect(await exists(junk)).toBe(true);
  });

  it("forgets requests once no archive of theirs can be left, and what a crash left mid-write", async () => {
    const gone = await requested(app, 2 * HOUR);
    const recent = await requested({ ...app, pod: "recent" }, HOUR);
    const busyOwner = { ...app, pod: "busy" };
    const busyRequest = await requested(busyOwner, HOUR + WINDOW + 1000);
    const busy = await archive(busyOwner, HOUR + WINDOW);
    const partial = join(dir, REQUESTS_DIR, ".ns_x_app_1.json.123.tmp");
    await writeFile(partial, "{");
    const t = (NOW - 2 * HOUR) / 1000;
    await utimes(partial, t, t);
    const res = await sweep({ exclude: (p) => p === busy });
    expect(res.deleted).toEqual([]);
    expect(res.forgotten).toEqual([gone.path]);
    expect((await readdir(join(dir, REQUESTS_DIR))).sort()).toEqual(
      [recent.path, busyRequest.path].map((p) => p.slice(p.lastIndexOf("/") + 1)).sort(),
    );
    // Once the busy archive is free it goes, and its request with it.
    const next = await sweep();
    expect(next.deleted).toEqual([busy]);
    expect(next.forgotten).toEqual([busyRequest.path]);
  });

  it("skips archives the caller still uses", async () => {
    await requested(app, 2 * HOUR);
    const busy = await archive(app, 2 * HOUR - 1000);
    const res = await sweep({ maxAgeMs: 1000, exclude: (p) => p === busy });
    expect(res.deleted).toEqual([]);
    expect(await exists(busy)).toBe(true);
  });

  it("tolerates a checkpoint directory that does not exist yet", async () => {
    const res = await sweepArchives({ checkpointDir: join(root, "nope"), maxAgeMs: 0 });
    expect(res).toEqual({ deleted: [], kept: 0, failed: [], forgotten: [] });
  });

  it("records requests atomically, owner-only, under names that split one way", async () => {
    const r = await recordCheckpointRequest(
      dir,
      { namespace: "a", pod: "web.x-1", container: "c" },
      1234,
    );
    expect(r.path).toBe(join(dir, REQUESTS_DIR, "a_web.x-1_c_1234.json"));
    expect(await readdir(join(dir, REQUESTS_DIR))).toEqual(["a_web.x-1_c_1234.json"]);
    const { stat } = await import("node:fs/promises");
    expect((await stat(r.path)).mode & 0o777).toBe(0o600);
    await expect(
      recordCheckpointRequest(dir, { namespace: "a_b", pod: "web", container: "c" }),
    ).rejects.toThrow(/not a Kubernetes name/);
  });

  it("runs periodically from a sweeper", async () => {
    // Young enough that the first pass, before the archive exists, does not forget it.
    await recordCheckpointRequest(dir, app, Date.now() - HOUR - 30_000);
    const sweeper = startArchiveSweeper({
      checkpointDir: dir,
      maxAgeMs: HOUR,
      requestWindowMs: WINDOW,
      intervalMs: 20,
    });
    try {
      const at = new Date(Date.now() - HOUR - 20_000);
      const late = join(dir, kubeletArchiveName(app, at));
      await writeSyntheticArchive(late, { ...app, image: "i", dataBytes: 64 });
      await utimes(late, at, at);
      await expect.poll(() => exists(late), { timeout: 2000, interval: 20 }).toBe(false);
    } finally {
      sweeper.stop();
    }
  });
});
