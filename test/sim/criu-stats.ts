import { readFile } from "node:fs/promises";

/**
 * CRIU's own timing of a dump (`stats-dump` in the images folder). The
 * source's downtime is `frozenUs`: its tasks are stopped from the freeze until
 * the dump ends (--leave-running thaws them then).
 */
export interface DumpStats {
  freezingUs: number;
  frozenUs: number;
  memdumpUs: number;
  memwriteUs: number;
  pagesScanned: number;
  pagesWritten: number;
}

/** CRIU's own timing of a restore (`stats-restore` in the work folder). */
export interface RestoreStats {
  forkingUs: number;
  restoreUs: number;
  pagesRestored: number;
}

// images/stats.proto: StatsEntry { dump_stats_entry dump = 1; restore_stats_entry restore = 2; }
const dumpFields: Record<number, keyof DumpStats> = {
  1: "freezingUs",
  2: "frozenUs",
  3: "memdumpUs",
  4: "memwriteUs",
  5: "pagesScanned",
  7: "pagesWritten",
};
const restoreFields: Record<number, keyof RestoreStats> = {
  3: "forkingUs",
  4: "restoreUs",
  5: "pagesRestored",
};

export async function readDumpStats(path: string): Promise<DumpStats | undefined> {
  const msg = await statsEntry(path, 1);
  if (!msg) return undefined;
  const out: DumpStats = {
    freezingUs: 0,
    frozenUs: 0,
    memdumpUs: 0,
    memwriteUs: 0,
    pagesScanned: 0,
    pagesWritten: 0,
  };
  for (const [field, value] of varintFields(msg)) {
    const key = dumpFields[field];
    if (key) out[key] = value;
  }
  return out;
}

export async function readRestoreStats(path: string): Promise<RestoreStats | undefined> {
  const msg = await statsEntry(path, 2);
  if (!msg) return undefined;
  const out: RestoreStats = { forkingUs: 0, restoreUs: 0, pagesRestored: 0 };
  for (const [field, value] of varintFields(msg)) {
    const key = restoreFields[field];
    if (key) out[key] = value;
  }
  return out;
}

/**
 * A CRIU image file is two 32-bit magics, then entries each prefixed with
 * a 32-bit little-endian length. The stats file holds one StatsEntry; this
 * returns its sub-message `field` (dump or restore).
 */
async function statsEntry(path: string, field: number): Promise<Buffer | undefined> {
  const buf = await readFile(path).catch(() => undefined);
  if (!buf || buf.length < 12) return undefined;
  const len = buf.readUInt32LE(8);
  const entry = buf.subarray(12, 12 + len);
  let pos = 0;
  while (pos < entry.length) {
    const [key, p1] = varint(entry, pos);
    pos = p1;
    const wire = key & 7;
    if (wire === 2) {
      const [n, p2] = varint(entry, pos);
      if (key >>> 3 === field) return entry.subarray(p2, p2 + n);
      pos = p2 + n;
    } else if (wire === 0) {
      pos = varint(entry, pos)[1];
    } else return undefined;
  }
  return undefined;
}

function* varintFields(msg: Buffer): Generator<[number, number]> {
  let pos = 0;
  while (pos < msg.length) {
    const [key, p1] = varint(msg, pos);
    if ((key & 7) !== 0) return; // every stats field is a varint
    const [value, p2] = varint(msg, p1);
    pos = p2;
    yield [key >>> 3, value];
  }
}

function varint(buf: Buffer, start: number): [number, number] {
  let value = 0;
  let scale = 1;
  let pos = start;
  for (;;) {
    const b = buf[pos++];
    if (b === undefined) throw new Error("truncated CRIU stats varint");
    value += (b & 0x7f) * scale;
    if (b < 0x80) return [value, pos];
    scale *= 128;
  }
}
