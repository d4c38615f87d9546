import { mkdtemp, open, rm, utimes } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { kubeletArchiveName, writeSyntheticArchive } from "../../test/support/synthetic-archive.ts";
import { END_OF_ARCHIVE, padding, ustarHeader } from "../archive/tar.ts";
import { findAdoptableArchive } from "./adopt.ts";

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "edgeshift-adopt-"));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

const T0 = Date.parse("2025-03-04T05:06:07Z");
type Who = { namespace: string; pod: string; container: string };

/** A CRI-O-layout archive of `who`, under the name the kubelet gives `named`, modified at T0 + `atSeconds`. */
async function crio(who: Who, atSeconds: number, named: Who = who): Promise<string> {
  const at = new Date(T0 + atSeconds * 1000);
  const path = join(dir, kubeletArchiveName(named, at));
  await writeSyntheticArchive(path, { ...who, image: "registry.example/app:1", dataBytes: 64 });
  await utimes(path, at, at);
  return path;
}

/** A minimal archive with the given spec.dump annotations (containerd's layout, or none). */
async function withAnnotations(
  name: string,
  annotations: Record<string, string>,
  atSeconds: number,
): Promise<string> {
  const path = join(dir, name);
  const files: [string, Buffer][] = [
    ["config.dump", Buffer.from(JSON.stringify({ id: "c0ffee", rootfsImageName: "busybox:1" }))],
    ["spec.dump", Buffer.from(JSON.stringify({ annotations }))],
    ["checkpoint/pages-1.img", Buffer.from("pages")],
  ];
  const fh = await open(path, "w", 0o600);
  await fh.write(ustarHeader({ name: "checkpoint", size: 0, type: "directory", mtime: 0 }));
  for (const [n, d] of files) {
    await fh.write(ustarHeader({ name: n, size: d.length, type: "file", mtime: 0 }));
    await fh.write(d);
    await fh.write(padding(d.length));
  }
  await fh.write(END_OF_ARCHIVE);
  await fh.close();
  const at = new Date(T0 + atSeconds * 1000);
  await utimes(path, at, at);
  return path;
}

// Pod "web" in namespace "a" with container "b-c", and pod "web" in namespace
// "a-b" with container "c": the kubelet names both checkpoint-web_a-b-c-<ts>.tar.
const ours: Who = { namespace: "a", pod: "web", container: "b-c" };
const theirs: Who = { namespace: "a-b", pod: "web", container: "c" };

describe("findAdoptableArchive", () => {
  it("adopts the archive whose metadata names the Migration's container, not a newer one with the same name prefix", async () => {
    const mine = await crio(ours, 5);
    const other = await crio(theirs, 9);
    expect(kubeletArchiveName(ours, new Date(T0))).toBe(kubeletArchiveName(theirs, new Date(T0)));
    expect((await findAdoptableArchive(dir, { ...ours, since: T0 }))?.path).toBe(mine);
    expect((await findAdoptableArchive(dir, { ...theirs, since: T0 }))?.path).toBe(other);
  });

  it("adopts nothing when the only archive under the name belongs to another pod", async () => {
    await crio(theirs, 5);
    expect(await findAdoptableArchive(dir, { ...ours, since: T0 })).toBeUndefined();
  });

  it("finds the archive by metadata whatever the rest of its name says, the newest matching one winning", async () => {
    await crio(ours, 2);
    const newest = await crio(ours, 8, { ...ours, container: "renamed" });
    await crio(theirs, 9);
    // Another pod's archives are never read: web-0 is not web.
    await crio({ ...ours, pod: "web-0" }, 10);
    expect((await findAdoptableArchive(dir, { ...ours, since: T0 }))?.path).toBe(newest);
  });

  it("ignores archives older than the Migration's checkpoint (one second of slack)", async () => {
    await crio(ours, -2);
    expect(await findAdoptableArchive(dir, { ...ours, since: T0 })).toBeUndefined();
    const edge = await crio(ours, -0.5);
    expect((await findAdoptableArchive(dir, { ...ours, since: T0 }))?.path).toBe(edge);
  });

  it("reads containerd's metadata, and never adopts an archive that does not name its pod and namespace", async () => {
    const name = kubeletArchiveName(ours, new Date(T0 + 3000));
    const containerd = await withAnnotations(
      name,
      {
        "io.kubernetes.cri.container-name": "b-c",
        "io.kubernetes.cri.sandbox-name": "web",
        "io.kubernetes.cri.sandbox-namespace": "a",
      },
      3,
    );
    await withAnnotations(
      kubeletArchiveName(ours, new Date(T0 + 6000)),
      { "io.kubernetes.cri.container-name": "b-c" },
      6,
    );
    expect((await findAdoptableArchive(dir, { ...ours, since: T0 }))?.path).toBe(containerd);
  });

  it("skips a corrupt candidate and a directory that does not exist", async () => {
    const mine = await crio(ours, 1);
    const junk = join(dir, kubeletArchiveName(ours, new Date(T0 + 7000)));
    const fh = await open(junk, "w");
    await fh.write("not a tar".repeat(100));
    await fh.close();
    await utimes(junk, new Date(T0 + 7000), new Date(T0 + 7000));
    expect((await findAdoptableArchive(dir, { ...ours, since: T0 }))?.path).toBe(mine);
    expect(
      await findAdoptableArchive(join(dir, "missing"), { ...ours, since: T0 }),
    ).toBeUndefined();
  });
});
