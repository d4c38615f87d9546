import { execFile } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { mkdtemp, open, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { COMPRESSIONS } from "./image.ts";
import { encodeLayer, type LayerSink } from "./layer.ts";

const run = promisify(execFile);
let dir: string;
let input: string;

async function sha256sum(path: string): Promise<string> {
  const { stdout } = await run("sha256sum", [path]);
  return `sha256:${stdout.split(" ")[0]}`;
}

/**
 * A sink that writes to a file, as an upload would send. The encoder hands
 * over the next chunk before the last write has finished (as a request body
 * takes them), so each write goes to the offset its call order gives: a
 * FileHandle write at the current position is not ordered between
 * overlapping calls, and a loaded machine once wrote the chunks out of order.
 */
async function fileSink(path: string) {
  const fh = await open(path, "w");
  let offset = 0;
  const sink: LayerSink = {
    write: async (chunk) => {
      const at = offset;
      offset += chunk.length;
      await fh.write(chunk, 0, chunk.length, at);
    },
  };
  return { sink, close: () => fh.close() };
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "edgeshift-layer-"));
  input = join(dir, "archive.tar");
  // Not a multiple of the read size; half random, half repetitive (compressible).
  const parts: Buffer[] = [];
  for (let i = 0; i < 5; i++) parts.push(randomBytes(300_000), Buffer.alloc(300_000, `page ${i} `));
  await writeFile(input, Buffer.concat(parts).subarray(0, 2_999_999));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe("encodeLayer", () => {
  for (const compression of COMPRESSIONS) {
    it(`${compression}: digest = sha256sum of the blob, diffID = sha256sum of the archive`, async () => {
      const blob = join(dir, `blob-${compression}`);
      const { sink, close } = await fileSink(blob);
      const d = await encodeLayer(input, compression, sink, { chunkSize: 64 * 1024 });
      await close();
      expect(d.digest).toBe(await sha256sum(blob));
      expect(d.diffId).toBe(await sha256sum(input));
      expect(d.size).toBe((await readFile(blob)).length);
      expect(d.uncompressedSize).toBe(2_999_999);
      if (compression === "none") {
        expect(d.digest).toBe(d.diffId);
      } else {
        expect(d.size).toBeLessThan(d.uncompressedSize);
        // The real CLI decompresses it back to the archive, byte for byte.
        const tool = compression === "zstd" ? "zstd" : "gzip";
        const { stdout } = await run("sh", ["-c", `${tool} -dc "$1" | sha256sum`, "sh", blob]);
        expect(`sha256:${stdout.split(" ")[0]}`).toBe(d.diffId);
      }
    });
  }

  it("does not reuse a read buffer before the sink has released it", async () => {
    // A slow sink that keeps a reference and looks at it only later: if the
    // encoder refilled the buffer meanwhile, the copy would differ.
    const got: Buffer[] = [];
    const sink: LayerSink = {
      write: async (chunk) => {
        const before = createHash("sha256").update(chunk).digest("hex");
        await new Promise((r) => setTimeout(r, 2));
        expect(createHash("sha256").update(chunk).digest("hex")).toBe(before);
        got.push(Buffer.from(chunk));
      },
    };
    const d = await encodeLayer(input, "none", sink, { chunkSize: 100_000, depth: 3 });
    expect(`sha256:${createHash("sha256").update(Buffer.concat(got)).digest("hex")}`).toBe(
      d.diffId,
    );
    expect(d.diffId).toBe(await sha256sum(input));
  });

  it("fails when the sink fails, for every compression", async () => {
    for (const compression of COMPRESSIONS) {
      let n = 0;
      const sink: LayerSink = {
        write: async () => {
          if (++n === 3) throw new Error("connection reset");
        },
      };
      await expect(encodeLayer(input, compression, sink, { chunkSize: 64 * 1024 })).rejects.toThrow(
        /connection reset|destroyed/,
      );
    }
  });

  it("stops when aborted", async () => {
    const ac = new AbortController();
    const sink: LayerSink = {
      write: async () => {
        ac.abort(new Error("migration cancelled"));
      },
    };
    await expect(
      encodeLayer(input, "none", sink, { chunkSize: 64 * 1024, signal: ac.signal }),
    ).rejects.toThrow("migration cancelled");
  });
});
