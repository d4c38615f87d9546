import { open } from "node:fs/promises";
import { type ConfineOptions, confineArchivePath } from "./confine.ts";
import { ArchiveError } from "./errors.ts";
import { type CheckpointMetadata, checkpointMetadataFromDumps } from "./metadata.ts";
import { readEntryData, scanTar, type TarEntry, TarFormatError } from "./tar.ts";

export interface ArchiveInfo {
  /** Real path of the archive. */
  path: string;
  sizeBytes: number;
  modifiedAt: Date;
  entries: number;
  /** Bytes of regular files under checkpoint/ (the CRIU images). */
  checkpointBytes: number;
  metadata: CheckpointMetadata;
}

export interface ValidateOptions extends ConfineOptions {
  /** When set, the path must resolve to a regular file inside this directory first. */
  checkpointDir?: string;
  /** Cap on config.dump and spec.dump. Default 4 MiB. */
  maxMetadataBytes?: number;
}

/** The parts of a container checkpoint archive CRI-O and containerd need to restore. */
export const REQUIRED_ENTRIES = ["config.dump", "spec.dump", "checkpoint"] as const;

/**
 * Checks that `path` is a tar of a container checkpoint (config.dump, spec.dump,
 * checkpoint/), that no entry name escapes the root, and reads the original
 * container name and base image. Reads headers only: cost does not grow with
 * the size of the CRIU images. Throws ArchiveError.
 */
export async function validateArchive(
  path: string,
  opts: ValidateOptions = {},
): Promise<ArchiveInfo> {
  const real = opts.checkpointDir ? await confineArchivePath(opts.checkpointDir, path, opts) : path;
  const maxMeta = opts.maxMetadataBytes ?? 4 * 1024 * 1024;
  let fh: Awaited<ReturnType<typeof open>>;
  try {
    fh = await open(real, "r");
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new ArchiveError(
      code === "ENOENT" ? "NotFound" : "ArchiveInvalid",
      `Cannot open archive ${real}: ${code ?? (err as Error).message}`,
      { cause: err },
    );
  }
  try {
    const st = await fh.stat();
    if (!st.isFile()) throw new ArchiveError("NotARegularFile", `${real} is not a regular file`);
    let config: TarEntry | undefined;
    let spec: TarEntry | undefined;
    let hasCheckpointDir = false;
    let entries = 0;
    let checkpointBytes = 0;
    for await (const e of scanTar(fh, st.size)) {
      entries++;
      if (e.rawName.startsWith("/") || e.name.split("/").includes("..")) {
        throw new ArchiveError(
          "ArchiveInvalid",
          `Entry ${JSON.stringify(e.rawName)} escapes the root`,
        );
      }
      if (e.name === "config.dump" && e.type === "file") config = e;
      else if (e.name === "spec.dump" && e.type === "file") spec = e;
      else if (e.name === "checkpoint" && e.type === "directory") hasCheckpointDir = true;
      else if (e.name.startsWith("checkpoint/")) {
        hasCheckpointDir = true;
        if (e.type === "file") checkpointBytes += e.size;
      }
    }
    const missing = [
      config ? undefined : "config.dump",
      spec ? undefined : "spec.dump",
      hasCheckpointDir ? undefined : "checkpoint/",
    ].filter((m) => m !== undefined);
    if (!config || !spec || missing.length > 0) {
      throw new ArchiveError(
        "ArchiveInvalid",
        `Not a container checkpoint archive: missing ${missing.join(", ")}`,
      );
    }
    const metadata = checkpointMetadataFromDumps(
      (await readEntryData(fh, config, maxMeta)).toString("utf8"),
      (await readEntryData(fh, spec, maxMeta)).toString("utf8"),
    );
    return {
      path: real,
      sizeBytes: st.size,
      modifiedAt: st.mtime,
      entries,
      checkpointBytes,
      metadata,
    };
  } catch (err) {
    if (err instanceof TarFormatError) {
      throw new ArchiveError("ArchiveInvalid", `Not a valid tar archive: ${err.message}`, {
        cause: err,
      });
    }
    throw err;
  } finally {
    await fh.close();
  }
}
