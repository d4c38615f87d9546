import { execFile } from "node:child_process";
import { mkdir, mkdtemp, open, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  END_OF_ARCHIVE,
  padding,
  parseHeader,
  readEntryData,
  scanTar,
  type TarEntry,
  TarFormatError,
  ustarHeader,
} from "./tar.ts";

const run = promisify(execFile);
let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "edgeshift-tar-"));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function scan(path: string): Promise<{ entries: TarEntry[]; data: Map<string, string> }> {
  const fh = await open(path, "r");
  try {
    const { size } = await fh.stat();
    const entries: TarEntry[] = [];
    const data = new Map<string, string>();
    for await (const e of scanTar(fh, size)) {
      entries.push(e);
      if (e.type === "file") data.set(e.name, (await readEntryData(fh, e, 1 << 20)).toString());
    }
    return { entries, data };
  } finally {
    await fh.close();
  }
}

describe("scanTar against GNU tar", () => {
  const long = `${"deep/".repeat(30)}file-with-a-long-name.txt`;

  beforeAll(async () => {
    const src = join(dir, "src");
    await mkdir(join(src, "checkpoint"), { recursive: true });
    await mkdir(join(src, ...long.split("/").slice(0, -1)), { recursive: true });
    await writeFile(join(src, "config.dump"), '{"name":"x"}');
    await writeFile(join(src, "checkpoint", "pages-1.img"), "p".repeat(1000));
    await writeFile(join(src, long), "long");
  });

  for (const format of ["gnu", "pax", "ustar"]) {
    it(`reads names, types and data of a --format=${format} archive`, async () => {
      const path = join(dir, `${format}.tar`);
      const files = [
        "config.dump",
        "checkpoint",
        ...(format === "ustar" ? [] : [long.split("/")[0] ?? ""]),
      ];
      await run("tar", ["-C", join(dir, "src"), `--format=${format}`, "-cf", path, ...files]);
      const { entries, data } = await scan(path);
      expect(data.get("config.dump")).toBe('{"name":"x"}');
      expect(data.get("checkpoint/pages-1.img")).toBe("p".repeat(1000));
      expect(entries.find((e) => e.name === "checkpoint")?.type).toBe("directory");
      if (format !== "ustar") expect(data.get(long)).toBe("long");
    });
  }

  it("refuses a header whose checksum does not match", async () => {
    const path = join(dir, "gnu.tar");
    const bytes = await readFile(path);
    bytes[10] = (bytes[10] ?? 0) ^ 0xff;
    const bad = join(dir, "corrupt.tar");
    await writeFile(bad, bytes);
    await expect(scan(bad)).rejects.toThrow(TarFormatError);
  });

  it("refuses a truncated archive", async () => {
    const bytes = await readFile(join(dir, "gnu.tar"));
    const bad = join(dir, "truncated.tar");
    await writeFile(bad, bytes.subarray(0, 1024 + 100));
    await expect(scan(bad)).rejects.toThrow(TarFormatError);
  });

  it("refuses bytes that are not a tar at all", async () => {
    const bad = join(dir, "not.tar");
    await writeFile(bad, Buffer.alloc(4096, 0x41));
    await expect(scan(bad)).rejects.toThrow(TarFormatError);
  });
});

describe("ustarHeader", () => {
  it("writes archives GNU tar lists and extracts byte for byte", async () => {
    const path = join(dir, "written.tar");
    const body = Buffer.from("hello checkpoint\n");
    await writeFile(
      path,
      Buffer.concat([
        ustarHeader({ name: "checkpoint", size: 0, type: "directory", mtime: 1_700_000_000 }),
        ustarHeader({
          name: "checkpoint/core-1.img",
          size: body.length,
          type: "file",
          mode: 0o600,
          mtime: 1_700_000_000,
        }),
        body,
        padding(body.length),
        END_OF_ARCHIVE,
      ]),
    );
    const { stdout } = await run("tar", ["-tvf", path]);
    expect(stdout).toMatch(/^drwxr-xr-x root\/root\s+0 2023-11-14 \S+ checkpoint\/$/m);
    expect(stdout).toMatch(/^-rw------- root\/root\s+17 2023-11-14 \S+ checkpoint\/core-1.img$/m);
    const out = join(dir, "extracted");
    await mkdir(out);
    await run("tar", ["-C", out, "-xf", path]);
    expect(await readFile(join(out, "checkpoint", "core-1.img"))).toEqual(body);
  });

  it("parses back what it wrote, checksum included", () => {
    const h = parseHeader(ustarHeader({ name: "a/b.img", size: 12345, type: "file", mtime: 42 }));
    expect(h).toMatchObject({ name: "a/b.img", size: 12345, mtime: 42, typeflag: "0" });
    expect(parseHeader(Buffer.alloc(512))).toBeUndefined();
  });

  it("refuses names ustar cannot hold", () => {
    expect(() => ustarHeader({ name: "x".repeat(101), size: 0, type: "file" })).toThrow(
      TarFormatError,
    );
  });
});
