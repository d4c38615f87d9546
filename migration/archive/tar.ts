// A minimal tar reader and writer. The reader walks headers with positional
// reads and seeks over entry data, so validating a multi-gigabyte checkpoint
// archive touches a few kilobytes instead of streaming every byte a second
// time (the push already reads it once). The writer makes ustar archives
// (the tests' synthetic checkpoint archives, test/support/synthetic-archive.ts).
import type { FileHandle } from "node:fs/promises";

export const BLOCK = 512;

export type TarEntryType = "file" | "directory" | "symlink" | "hardlink" | "other";

export interface TarEntry {
  /** Normalised: no leading "./", no trailing "/". */
  name: string;
  /** The name exactly as stored. */
  rawName: string;
  type: TarEntryType;
  size: number;
  mode: number;
  mtime: number;
  linkname: string;
  /** Byte offset of the entry's data in the archive. */
  dataOffset: number;
}

export class TarFormatError extends Error {
  override name = "TarFormatError";
}

/** The fields of one 512-byte header block. `undefined` for an all-zero (end) block. */
export interface RawHeader {
  name: string;
  mode: number;
  size: number;
  mtime: number;
  typeflag: string;
  linkname: string;
}

function cString(buf: Buffer, start: number, len: number): string {
  const end = buf.indexOf(0, start);
  return buf.toString("utf8", start, end === -1 || end > start + len ? start + len : end);
}

function numeric(buf: Buffer, start: number, len: number): number {
  const first = buf[start] ?? 0;
  if (first & 0x80) {
    // GNU base-256 (sizes of 8 GiB and more); positive values only.
    let v = first & 0x7f;
    for (let i = 1; i < len; i++) v = v * 256 + (buf[start + i] ?? 0);
    return v;
  }
  const text = cString(buf, start, len).trim();
  if (text === "") return 0;
  if (!/^[0-7]+$/.test(text)) throw new TarFormatError(`Invalid octal field "${text}"`);
  return Number.parseInt(text, 8);
}

/** Parses one header block; verifies its checksum. */
export function parseHeader(block: Buffer): RawHeader | undefined {
  if (block.length !== BLOCK) throw new TarFormatError("Short header block");
  let unsigned = 0;
  let signed = 0;
  let zero = true;
  for (let i = 0; i < BLOCK; i++) {
    const b = i >= 148 && i < 156 ? 0x20 : (block[i] ?? 0);
    if ((block[i] ?? 0) !== 0) zero = false;
    unsigned += b;
    signed += b > 127 ? b - 256 : b;
  }
  if (zero) return undefined;
  const stored = numeric(block, 148, 8);
  if (stored !== unsigned && stored !== signed)
    throw new TarFormatError("Header checksum mismatch");
  let name = cString(block, 0, 100);
  // ustar splits long names into prefix + name; GNU tar uses that area differently.
  if (block.toString("latin1", 257, 263) === "ustar\0") {
    const prefix = cString(block, 345, 155);
    if (prefix) name = `${prefix}/${name}`;
  }
  return {
    name,
    mode: numeric(block, 100, 8),
    size: numeric(block, 124, 12),
    mtime: numeric(block, 136, 12),
    typeflag: String.fromCharCode(block[156] ?? 0),
    linkname: cString(block, 157, 100),
  };
}

/** Parses a pax extended header body ("<len> key=value\n" records). */
export function parsePax(body: Buffer): Map<string, string> {
  const out = new Map<string, string>();
  let pos = 0;
  while (pos < body.length) {
    const space = body.indexOf(0x20, pos);
    if (space === -1) break;
    const len = Number.parseInt(body.toString("latin1", pos, space), 10);
    if (!Number.isFinite(len) || len <= 0 || pos + len > body.length) {
      throw new TarFormatError("Malformed pax record");
    }
    const record = body.toString("utf8", space + 1, pos + len - 1);
    const eq = record.indexOf("=");
    if (eq > 0) out.set(record.slice(0, eq), record.slice(eq + 1));
    pos += len;
  }
  return out;
}

export function normaliseName(name: string): string {
  let n = name;
  while (n.startsWith("./")) n = n.slice(2);
  while (n.endsWith("/")) n = n.slice(0, -1);
  return n;
}

function entryType(flag: string): TarEntryType {
  switch (flag) {
    case "0":
    case "\0":
    case "7":
      return "file";
    case "5":
      return "directory";
    case "2":
      return "symlink";
    case "1":
      return "hardlink";
    default:
      return "other";
  }
}

const padded = (n: number) => Math.ceil(n / BLOCK) * BLOCK;
const MAX_META_ENTRY = 1024 * 1024;

async function readExactly(fh: FileHandle, length: number, position: number): Promise<Buffer> {
  const buf = Buffer.alloc(length);
  let done = 0;
  while (done < length) {
    const { bytesRead } = await fh.read(buf, done, length - done, position + done);
    if (bytesRead === 0) throw new TarFormatError("Unexpected end of archive");
    done += bytesRead;
  }
  return buf;
}

/**
 * Yields every entry of the tar archive open in `fh` (of `fileSize` bytes),
 * reading only headers. GNU long names and pax `path`/`linkpath`/`size`
 * overrides are applied. Throws TarFormatError on a corrupt or truncated archive.
 */
export async function* scanTar(fh: FileHandle, fileSize: number): AsyncGenerator<TarEntry> {
  let pos = 0;
  let longName: string | undefined;
  let longLink: string | undefined;
  let pax: Map<string, string> | undefined;
  let sawEntry = false;
  while (pos + BLOCK <= fileSize) {
    const header = parseHeader(await readExactly(fh, BLOCK, pos));
    if (!header) {
      if (!sawEntry) throw new TarFormatError("Archive has no entries");
      return; // end-of-archive marker
    }
    sawEntry = true;
    const dataOffset = pos + BLOCK;
    if (dataOffset + header.size > fileSize) throw new TarFormatError("Entry runs past the end");
    pos = dataOffset + padded(header.size);
    const flag = header.typeflag;
    if (flag === "L" || flag === "K" || flag === "x" || flag === "g") {
      if (header.size > MAX_META_ENTRY) throw new TarFormatError("Oversized metadata entry");
      const body = await readExactly(fh, header.size, dataOffset);
      if (flag === "L") longName = cString(body, 0, body.length);
      else if (flag === "K") longLink = cString(body, 0, body.length);
      else if (flag === "x") pax = parsePax(body);
      continue;
    }
    const rawName = pax?.get("path") ?? longName ?? header.name;
    const paxSize = pax?.get("size");
    const size = paxSize !== undefined ? Number(paxSize) : header.size;
    if (paxSize !== undefined) {
      if (!Number.isSafeInteger(size) || size < 0 || dataOffset + size > fileSize) {
        throw new TarFormatError("Invalid pax size");
      }
      pos = dataOffset + padded(size);
    }
    yield {
      name: normaliseName(rawName),
      rawName,
      type: entryType(flag),
      size,
      mode: header.mode,
      mtime: header.mtime,
      linkname: pax?.get("linkpath") ?? longLink ?? header.linkname,
      dataOffset,
    };
    longName = undefined;
    longLink = undefined;
    pax = undefined;
  }
  throw new TarFormatError("Archive ends without an end-of-archive marker");
}

/** Reads the data of a (small) entry found by scanTar. */
export async function readEntryData(fh: FileHandle, entry: TarEntry, maxBytes: number) {
  if (entry.size > maxBytes) {
    throw new TarFormatError(`${entry.name} is ${entry.size} bytes, more than ${maxBytes}`);
  }
  return readExactly(fh, entry.size, entry.dataOffset);
}

// --- writing -----------------------------------------------------------------

function octal(buf: Buffer, value: number, start: number, len: number): void {
  buf.write(`${value.toString(8).padStart(len - 1, "0")}\0`, start, len, "latin1");
}

/** A ustar header block for a regular file or directory. Names must fit 100 bytes. */
export function ustarHeader(entry: {
  name: string;
  size: number;
  type: "file" | "directory";
  mode?: number;
  mtime?: number;
}): Buffer {
  const name = entry.type === "directory" ? `${normaliseName(entry.name)}/` : entry.name;
  if (Buffer.byteLength(name) > 100) throw new TarFormatError(`Name too long for ustar: ${name}`);
  if (entry.size > 0o77777777777) throw new TarFormatError("Entry too large for ustar");
  const b = Buffer.alloc(BLOCK);
  b.write(name, 0, 100, "utf8");
  octal(b, entry.mode ?? (entry.type === "directory" ? 0o755 : 0o644), 100, 8);
  octal(b, 0, 108, 8);
  octal(b, 0, 116, 8);
  octal(b, entry.type === "directory" ? 0 : entry.size, 124, 12);
  octal(b, entry.mtime ?? Math.floor(Date.now() / 1000), 136, 12);
  b.write(entry.type === "directory" ? "5" : "0", 156, 1, "latin1");
  b.write("ustar\0", 257, 6, "latin1");
  b.write("00", 263, 2, "latin1");
  b.write("root", 265, 32, "latin1");
  b.write("root", 297, 32, "latin1");
  b.fill(0x20, 148, 156);
  let sum = 0;
  for (const byte of b) sum += byte;
  b.write(`${sum.toString(8).padStart(6, "0")}\0 `, 148, 8, "latin1");
  return b;
}

/** Zero bytes that pad `size` bytes of data to a block boundary. */
export function padding(size: number): Buffer {
  return Buffer.alloc(padded(size) - size);
}

/** Two zero blocks: the end-of-archive marker. */
export const END_OF_ARCHIVE = Buffer.alloc(2 * BLOCK);
