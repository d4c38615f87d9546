import { execFile } from "node:child_process";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";

const run = promisify(execFile);
const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), "../..");

/** Absolute paths of what a real test node (kubelet + containerd) runs. */
export interface NodeBinaries {
  kubelet: string;
  kubeProxy: string;
  containerd: string;
  containerdShim: string;
  ctr: string;
  coredns: string;
  /** The sandbox binary (test/cluster/pause), static. */
  pause: string;
  /** Debian's CNI plugins (bridge, host-local, loopback, portmap, ...). */
  cniDir: string;
  runc: string;
  /** The directory holding the `criu` wrapper; put it first on containerd's PATH. */
  criuDir: string;
}

/** The script's key for each field. */
const keys: Record<keyof NodeBinaries, string> = {
  kubelet: "kubelet",
  kubeProxy: "kube-proxy",
  containerd: "containerd",
  containerdShim: "containerd-shim-runc-v2",
  ctr: "ctr",
  coredns: "coredns",
  pause: "pause",
  cniDir: "cni",
  runc: "runc",
  criuDir: "criu-dir",
};

/** Reads the script's `key=absolute-path` lines; throws naming every key that is missing. */
export function parseNodeBinaries(stdout: string): NodeBinaries {
  const found = new Map<string, string>();
  for (const line of stdout.split("\n")) {
    const eq = line.indexOf("=");
    if (eq > 0) found.set(line.slice(0, eq).trim(), line.slice(eq + 1).trim());
  }
  const missing = Object.values(keys).filter((k) => !found.get(k)?.startsWith("/"));
  if (missing.length > 0) {
    throw new Error(
      `build-node-binaries.sh printed no absolute path for: ${missing.join(", ")} (stdout: ${JSON.stringify(stdout.slice(0, 2000))})`,
    );
  }
  const out = {} as NodeBinaries;
  for (const [field, key] of Object.entries(keys) as [keyof NodeBinaries, string][]) {
    out[field] = found.get(key) as string;
  }
  return out;
}

/**
 * Builds (or finds in the cache) the node binaries with test/cluster/build-node-binaries.sh,
 * which also installs runc and CRIU (test/sim/install-criu.sh).
 */
export async function ensureNodeBinaries(
  log: (m: string) => void = () => {},
): Promise<NodeBinaries> {
  log("Checking node binaries (a cold build takes several minutes)");
  const { stdout } = await run("bash", [join(repoRoot, "test/cluster/build-node-binaries.sh")], {
    maxBuffer: 16 * 1024 * 1024,
  });
  return parseNodeBinaries(stdout);
}
