import { execFile } from "node:child_process";
import { mkdir, mkdtemp, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { writeSyntheticArchive } from "../../test/support/synthetic-archive.ts";
import { ArchiveError } from "./errors.ts";
import { checkpointMetadataFromDumps } from "./metadata.ts";
import { validateArchive } from "./validate.ts";

const run = promisify(execFile);
let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "edgeshift-validate-"));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function reasonOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (err) {
    expect(err).toBeInstanceOf(ArchiveError);
    return (err as ArchiveError).reason;
  }
  throw new Error("expected validation to fail");
}

/** A tar made by GNU tar from files written into a fresh folder. */
async function gnuTar(name: string, files: Record<string, string>, extra: string[] = []) {
  const src = join(dir, `${name}-src`);
  for (const [f, body] of Object.entries(files)) {
    await mkdir(join(src, f, ".."), { recursive: true });
    if (f.endsWith("/")) await mkdir(join(src, f), { recursive: true });
    else await writeFile(join(src, f), body);
  }
  const path = join(dir, `${name}.tar`);
  await run("tar", ["-C", src, "-cf", path, ...extra, "."]);
  return path;
}

const CONFIG = JSON.stringify({
  id: "6924be1b",
  name: "k8s_counter_counters-7d9f_default_6975ee47_0",
  rootfsImage: "quay.io/adrianreber/counter:latest",
  rootfsImageRef: "a8758716bb6a",
  rootfsImageName: "quay.io/adrianreber/counter:latest",
  runtime: "runc",
});
const CRIO_SPEC = JSON.stringify({
  annotations: {
    "io.container.manager": "cri-o",
    "io.kubernetes.cri-o.Metadata": '{"name":"counter"}',
    "io.kubernetes.pod.name": "counters-7d9f",
    "io.kubernetes.pod.namespace": "default",
  },
});

describe("validateArchive", () => {
  it("accepts a synthetic CRI-O-layout archive and reads container, pod and base image", async () => {
    const a = await writeSyntheticArchive(
      join(dir, "checkpoint-web-0_shop-app-2025-01-02T03:04:05Z.tar"),
      {
        namespace: "shop",
        pod: "web-0",
        container: "app",
        image: "registry.example/shop/web:1.2",
        dataBytes: 3 * 1024 * 1024 + 17,
      },
    );
    const info = await validateArchive(a.path, { checkpointDir: dir });
    expect(info.sizeBytes).toBe((await stat(a.path)).size);
    expect(info.checkpointBytes).toBeGreaterThan(3 * 1024 * 1024);
    expect(info.metadata).toMatchObject({
      containerName: "app",
      podName: "web-0",
      namespace: "shop",
      baseImage: "registry.example/shop/web:1.2",
      engine: "CRI-O",
      runtime: "runc",
    });
    // GNU tar agrees it is a well-formed archive with the files CRI-O writes.
    const { stdout } = await run("tar", ["-tf", a.path]);
    for (const f of [
      "config.dump",
      "spec.dump",
      "checkpoint/",
      "checkpoint/pages-1.img",
      "rootfs-diff.tar",
      "deleted.files",
      "bind.mounts",
      "dump.log",
      "stats-dump",
      "network.status",
    ]) {
      expect(stdout.split("\n")).toContain(f);
    }
    expect((await stat(a.path)).mode & 0o777).toBe(0o600);
  });

  it("accepts a GNU tar archive with ./ prefixes", async () => {
    const path = await gnuTar("dot", {
      "config.dump": CONFIG,
      "spec.dump": CRIO_SPEC,
      "checkpoint/pages-1.img": "pages",
    });
    const info = await validateArchive(path);
    expect(info.metadata.containerName).toBe("counter");
    expect(info.metadata.baseImage).toBe("quay.io/adrianreber/counter:latest");
  });

  it("refuses archives missing any of config.dump, spec.dump, checkpoint/", async () => {
    for (const missing of ["config.dump", "spec.dump", "checkpoint/pages-1.img"]) {
      const files: Record<string, string> = {
        "config.dump": CONFIG,
        "spec.dump": CRIO_SPEC,
        "checkpoint/pages-1.img": "pages",
      };
      delete files[missing];
      const path = await gnuTar(`missing-${missing.replace(/\W/g, "")}`, files);
      await expect(validateArchive(path)).rejects.toThrow(missing.split("/")[0]);
      expect(await reasonOf(validateArchive(path))).toBe("ArchiveInvalid");
    }
  });

  it("refuses entries that would land outside the root", async () => {
    const path = await gnuTar(
      "escape",
      { "config.dump": CONFIG, "spec.dump": CRIO_SPEC, "checkpoint/pages-1.img": "x" },
      ["--transform=s,^./checkpoint/pages-1.img,../../etc/cron.d/evil,", "-P"],
    );
    expect(await reasonOf(validateArchive(path))).toBe("ArchiveInvalid");
    await expect(validateArchive(path)).rejects.toThrow(
      /\.\.\/\.\.\/etc\/cron\.d\/evil.*escapes the root/,
    );
  });

  it("refuses a file that is not a tar, and unreadable JSON", async () => {
    const junk = join(dir, "junk.tar");
    await writeFile(junk, "definitely not a tar archive".repeat(100));
    expect(await reasonOf(validateArchive(junk))).toBe("ArchiveInvalid");
    const badJson = await gnuTar("badjson", {
      "config.dump": "{not json",
      "spec.dump": CRIO_SPEC,
      "checkpoint/x": "x",
    });
    expect(await reasonOf(validateArchive(badJson))).toBe("ArchiveInvalid");
  });

  it("confines before it opens anything", async () => {
    const outside = await mkdtemp(join(tmpdir(), "edgeshift-outside-"));
    try {
      const a = await writeSyntheticArchive(join(outside, "checkpoint-a_b-c-x.tar"), {
        namespace: "b",
        pod: "a",
        container: "c",
        image: "i",
        dataBytes: 10,
      });
      expect(await reasonOf(validateArchive(a.path, { checkpointDir: dir }))).toBe(
        "PathOutsideCheckpointDir",
      );
    } finally {
      await rm(outside, { recursive: true, force: true });
    }
  });
});

describe("checkpointMetadataFromDumps", () => {
  it("reads CRI-O's container name from io.kubernetes.cri-o.Metadata, not config.dump's long name", () => {
    const m = checkpointMetadataFromDumps(CONFIG, CRIO_SPEC);
    expect(m).toEqual({
      containerName: "counter",
      podName: "counters-7d9f",
      namespace: "default",
      baseImage: "quay.io/adrianreber/counter:latest",
      baseImageId: "a8758716bb6a",
      rawImageName: "quay.io/adrianreber/counter:latest",
      engine: "CRI-O",
      runtime: "runc",
      containerId: "6924be1b",
    });
  });

  it("reads containerd's CRI annotations", () => {
    const spec = JSON.stringify({
      annotations: {
        "io.kubernetes.cri.container-name": "worker",
        "io.kubernetes.cri.sandbox-name": "jobs-abc",
        "io.kubernetes.cri.sandbox-namespace": "batch",
        "io.kubernetes.cri.image-name": "docker.io/library/busybox:1.36",
      },
    });
    const m = checkpointMetadataFromDumps(JSON.stringify({ id: "c0ffee" }), spec);
    expect(m).toMatchObject({
      containerName: "worker",
      podName: "jobs-abc",
      namespace: "batch",
      baseImage: "docker.io/library/busybox:1.36",
      engine: "containerd",
    });
  });

  it("names a container containerd restored by its CRI name: its container-name annotation says containerd", () => {
    // What containerd 2.3.7 writes when it checkpoints a container it had restored from a checkpoint.
    const spec = JSON.stringify({
      annotations: {
        "io.kubernetes.cri.container-name": "containerd",
        "io.kubernetes.cri.sandbox-name": "web-1a2b3c4d",
        "io.kubernetes.cri.sandbox-namespace": "shop",
        restored: "true",
      },
    });
    const config = JSON.stringify({
      id: "c0ffee",
      name: "web_web-1a2b3c4d_shop_6f1c0c8e-8d7e-4a59-9f43-0d6b3c1e2a11_0",
      rootfsImageName: "docker.io/library/node:24-alpine",
    });
    expect(checkpointMetadataFromDumps(config, spec)).toMatchObject({
      containerName: "web",
      podName: "web-1a2b3c4d",
      namespace: "shop",
      baseImage: "docker.io/library/node:24-alpine",
    });
    // A CRI name of another pod is not taken for this one's: the annotation stands.
    const other = JSON.stringify({ name: "web_other_shop_uid_0", rootfsImageName: "x" });
    expect(checkpointMetadataFromDumps(other, spec).containerName).toBe("containerd");
  });

  it("falls back to the kubelet's k8s_<container>_ name, and refuses an archive without a base image", () => {
    const m = checkpointMetadataFromDumps(CONFIG, JSON.stringify({ annotations: {} }));
    expect(m.containerName).toBe("counter");
    expect(() =>
      checkpointMetadataFromDumps(JSON.stringify({ name: "k8s_a_b_c_d_0" }), CRIO_SPEC),
    ).toThrow(/base image/);
  });
});
