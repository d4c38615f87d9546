// Helm for the chart tests: the binary build-helm.sh builds from the Go module
// proxy (.ci/run calls it before the tests; here it only prints the cached
// path), and a runner that keeps Helm's cache, config and data out of $HOME.
import { execFile } from "node:child_process";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";

const run = promisify(execFile);
const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), "../..");

/** The helm binary's absolute path; fails (naming the script) when it was not built first. */
export async function ensureHelm(): Promise<string> {
  const { stdout } = await run(
    "bash",
    [join(repoRoot, "test/cluster/build-helm.sh"), "--installed"],
    { maxBuffer: 16 * 1024 * 1024 },
  );
  return stdout.trim().split("\n").at(-1) ?? "";
}

export interface HelmResult {
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * Runs helm from the repository root, as a user in a clone runs it; resolves
 * with the exit code instead of rejecting, so a test can assert a failure.
 * `home` holds Helm's own files (HELM_CACHE_HOME, HELM_CONFIG_HOME, HELM_DATA_HOME).
 */
export function helmRunner(helm: string, home: string, kubeconfig?: string) {
  const env = {
    ...process.env,
    HELM_CACHE_HOME: join(home, "cache"),
    HELM_CONFIG_HOME: join(home, "config"),
    HELM_DATA_HOME: join(home, "data"),
    // Without a cluster, `helm template` and `helm lint` must not read the user's.
    KUBECONFIG: kubeconfig ?? join(home, "no-kubeconfig"),
  };
  return (args: string[]) =>
    new Promise<HelmResult>((res) => {
      execFile(
        helm,
        args,
        { cwd: repoRoot, env, maxBuffer: 32 * 1024 * 1024 },
        (err, stdout, stderr) => {
          const code = err ? (typeof err.code === "number" ? err.code : 1) : 0;
          res({ code, stdout, stderr });
        },
      );
    });
}
