import { mkdir, mkdtemp, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { confineArchivePath, isWithin } from "./confine.ts";
import { ArchiveError } from "./errors.ts";

// Real directories, files and symlinks in a temp dir:
//   root/checkpoints/ok.tar               regular file
//   root/checkpoints/link-inside.tar  ->  ok.tar
//   root/checkpoints/link-outside.tar ->  root/secret.tar
//   root/checkpoints/escape-dir       ->  root/            (a directory symlink)
//   root/checkpoints/sub/               a directory
//   root/secret.tar
let root: string;
let dir: string;

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), "edgeshift-confine-"));
  dir = join(root, "checkpoints");
  await mkdir(join(dir, "sub"), { recursive: true });
  await writeFile(join(dir, "ok.tar"), "x");
  await writeFile(join(root, "secret.tar"), "secret");
  await symlink("ok.tar", join(dir, "link-inside.tar"));
  await symlink(join(root, "secret.tar"), join(dir, "link-outside.tar"));
  await symlink(root, join(dir, "escape-dir"));
});

afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

async function reason(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (err) {
    expect(err).toBeInstanceOf(ArchiveError);
    return (err as ArchiveError).reason;
  }
  throw new Error("expected a refusal");
}

describe("confineArchivePath", () => {
  it("accepts a regular file inside the directory, absolute or relative", async () => {
    expect(await confineArchivePath(dir, join(dir, "ok.tar"))).toBe(join(dir, "ok.tar"));
    expect(await confineArchivePath(dir, "ok.tar")).toBe(join(dir, "ok.tar"));
  });

  it("accepts a symlink that stays inside, returning the real path", async () => {
    expect(await confineArchivePath(dir, join(dir, "link-inside.tar"))).toBe(join(dir, "ok.tar"));
  });

  it("refuses '..' segments even when they would land back inside", async () => {
    expect(await reason(confineArchivePath(dir, `${dir}/../secret.tar`))).toBe(
      "PathOutsideCheckpointDir",
    );
    expect(await reason(confineArchivePath(dir, `${dir}/sub/../ok.tar`))).toBe(
      "PathOutsideCheckpointDir",
    );
    expect(await reason(confineArchivePath(dir, "../secret.tar"))).toBe("PathOutsideCheckpointDir");
  });

  it("refuses absolute paths elsewhere and the directory itself", async () => {
    expect(await reason(confineArchivePath(dir, join(root, "secret.tar")))).toBe(
      "PathOutsideCheckpointDir",
    );
    expect(await reason(confineArchivePath(dir, "/etc/passwd"))).toBe("PathOutsideCheckpointDir");
    expect(await reason(confineArchivePath(dir, dir))).toBe("PathOutsideCheckpointDir");
    // A sibling whose name merely starts with the directory's name.
    expect(await reason(confineArchivePath(dir, `${dir}-evil/x.tar`))).toBe(
      "PathOutsideCheckpointDir",
    );
  });

  it("refuses symlinks that resolve outside, file or directory", async () => {
    expect(await reason(confineArchivePath(dir, join(dir, "link-outside.tar")))).toBe(
      "PathOutsideCheckpointDir",
    );
    expect(await reason(confineArchivePath(dir, join(dir, "escape-dir", "secret.tar")))).toBe(
      "PathOutsideCheckpointDir",
    );
  });

  it("reports missing files and non-files", async () => {
    expect(await reason(confineArchivePath(dir, join(dir, "gone.tar")))).toBe("NotFound");
    expect(await reason(confineArchivePath(dir, join(dir, "sub")))).toBe("NotARegularFile");
    expect(await reason(confineArchivePath(dir, "ok.tar\0.tar"))).toBe("PathOutsideCheckpointDir");
  });

  it("rebases the kubelet's host path onto the directory mounted here", async () => {
    const real = await confineArchivePath(dir, "/var/lib/kubelet/checkpoints/ok.tar", {
      kubeletCheckpointDir: "/var/lib/kubelet/checkpoints",
    });
    expect(real).toBe(join(dir, "ok.tar"));
    expect(
      await reason(
        confineArchivePath(dir, "/var/lib/kubelet/pods/x.tar", {
          kubeletCheckpointDir: "/var/lib/kubelet/checkpoints",
        }),
      ),
    ).toBe("PathOutsideCheckpointDir");
  });
});

describe("isWithin", () => {
  it("compares path segments, not string prefixes", () => {
    expect(isWithin("/a/b", "/a/b/c")).toBe(true);
    expect(isWithin("/a/b", "/a/b")).toBe(true);
    expect(isWithin("/a/b", "/a/bc")).toBe(false);
    expect(isWithin("/a/b", "/a")).toBe(false);
    expect(isWithin("/a/b", "/a/b/..foo")).toBe(true);
  });
});
