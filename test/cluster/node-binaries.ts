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
  /** containerd 1.7 and its shim (no CheckpointContainer), when built with `withContainerd17`. */
  containerd17?: string;
  containerdShim17?: string;
}

/** Keys printed only with --with-containerd-1.7. */
const optionalKeys = {
  containerd17: "containerd-1.7",
  containerdShim17: "containerd-shim-runc-v2-1.7",
} as const;

/** The script's key for each field. */
const keys: Record<Exclude<keyof NodeBinaries, keyof typeof optionalKeys>, string> = {
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

/**
 * Reads the script's `key=absolute-path` lines; throws naming every key that is
 * missing (the containerd 1.7 keys too when `withContainerd17`).
 */
export function parseNodeBinaries(stdout: string, withContainerd17 = false): NodeBinaries {
  const found = new Map<string, string>();
  for (const line of stdout.split("\n")) {
    const eq = line.indexOf("=");
    if (eq > 0) found.set(line.slice(0, eq).trim(), line.slice(eq + 1).trim());
  }
  const required = [
    ...Object.values(keys),
    ...(withContainerd17 ? Object.values(optionalKeys) : []),
  ];
  const missing = required.filter((k) => !found.get(k)?.startsWith("/"));
  if (missing.length > 0) {
    throw new Error(
      `build-node-binaries.sh printed no absolute path for: ${missing.join(", ")} (stdout: ${JSON.stringify(stdout.slice(0, 2000))})`,
    );
  }
  const out = {} as NodeBinaries;
  for (const [field, key] of Object.entries(keys) as [keyof typeof keys, string][]) {
    out[field] = found.get(key) as string;
  }
  for (const [field, key] of Object.entries(optionalKeys) as [
    keyof typeof optionalKeys,
    string,
  ][]) {
    const v = found.get(key);
    if (v?.startsWith("/")) out[field] = v;
  }
  return out;
}

/**
 * Builds (or finds in the cache) the node binaries with test/cluster/build-node-binaries.sh,
 * which also installs runc and CRIU (test/cluster/install-criu.sh).
 */
export async function ensureNodeBinaries(
  log: (m: string) => void = () => {},
  opts: { withContainerd17?: boolean } = {},
): Promise<NodeBinaries> {
  log("Checking node binaries (a cold build takes several minutes)");
  const args = [join(repoRoot, "test/cluster/build-node-binaries.sh")];
  if (opts.withContainerd17) args.push("--with-containerd-1.7");
  const { stdout } = await run("bash", args, { maxBuffer: 16 * 1024 * 1024 });
  return parseNodeBinaries(stdout, opts.withContainerd17);
}
