import { lstat, realpath } from "node:fs/promises";
import { isAbsolute, relative, resolve, sep } from "node:path";
import { ArchiveError } from "./errors.ts";

/** True when `child` is `parent` or below it (both absolute and normalised). */
export function isWithin(parent: string, child: string): boolean {
  const rel = relative(parent, child);
  return rel === "" || (!rel.startsWith(`..${sep}`) && rel !== ".." && !isAbsolute(rel));
}

export interface ConfineOptions {
  /**
   * Where the kubelet's checkpoint directory is on the host when it is mounted
   * elsewhere here: a path the kubelet returns under it is rebased onto the
   * checkpoint directory.
   */
  kubeletCheckpointDir?: string;
}

/**
 * Resolves a path the kubelet returned to a regular file inside `checkpointDir`,
 * or throws ArchiveError. Refused: `..` segments, absolute paths elsewhere, and
 * anything whose real path (after symlinks) leaves the directory.
 */
export async function confineArchivePath(
  checkpointDir: string,
  candidate: string,
  opts: ConfineOptions = {},
): Promise<string> {
  const refuse = (why: string) =>
    new ArchiveError(
      "PathOutsideCheckpointDir",
      `Archive path ${JSON.stringify(candidate)} ${why}`,
    );
  if (candidate === "" || candidate.includes("\0")) throw refuse("is empty or holds a NUL byte");
  if (candidate.split(/[\\/]/).includes("..")) throw refuse("contains a '..' segment");
  const dir = resolve(checkpointDir);
  let lexical = isAbsolute(candidate) ? resolve(candidate) : resolve(dir, candidate);
  if (opts.kubeletCheckpointDir && isAbsolute(candidate)) {
    const kubeletDir = resolve(opts.kubeletCheckpointDir);
    if (isWithin(kubeletDir, lexical)) lexical = resolve(dir, relative(kubeletDir, lexical));
  }
  if (!isWithin(dir, lexical) || lexical === dir) throw refuse(`is not inside ${dir}`);

  let realDir: string;
  try {
    realDir = await realpath(dir);
  } catch (err) {
    throw new ArchiveError("NotFound", `Checkpoint directory ${dir} does not exist`, {
      cause: err,
    });
  }
  let real: string;
  try {
    real = await realpath(lexical);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === "ENOENT") {
      throw new ArchiveError("NotFound", `Archive ${lexical} does not exist`, { cause: err });
    }
    throw refuse(`cannot be resolved (${code ?? "error"})`);
  }
  if (!isWithin(realDir, real) || real === realDir) {
    throw refuse(`resolves to ${real}, outside ${realDir}`);
  }
  const st = await lstat(real);
  if (!st.isFile()) {
    throw new ArchiveError("NotARegularFile", `Archive ${lexical} is not a regular file`);
  }
  return real;
}
