import { execFile } from "node:child_process";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));

export interface SimTools {
  /** Folder with the `criu` wrapper, for SimRuntimeOptions.criuBinDir. */
  criuBinDir: string;
  /** Read-only base root filesystem with busybox, node and /app workloads. */
  rootfs: string;
}

/**
 * Installs runc and trixie's CRIU and builds the workload root filesystem,
 * both cached outside the repo: seconds the first time, ~1 s after.
 */
export async function ensureSimTools(): Promise<SimTools> {
  const criuBinDir = await script("install-criu.sh");
  const rootfs = await script("rootfs.sh");
  return { criuBinDir, rootfs };
}

function script(name: string): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile("bash", [join(here, name)], { maxBuffer: 1 << 20 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`test/sim/${name} failed: ${stderr.trim() || err.message}`));
      else resolve(stdout.trim().split("\n").at(-1) ?? "");
    });
  });
}
