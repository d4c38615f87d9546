// The kubectl-edgeshift npm package as a user gets it: packed from plugin/package
// (`npm pack`, which bundles it), installed into an empty prefix with an empty npm
// cache and --offline, and run on the oldest Node.js the package supports, with a
// PATH that holds no part of this repository (so no node_modules, no Node 24).
import { execFile, execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdirSync, readdirSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { delimiter, dirname, join } from "node:path";
import { repoRoot } from "./operator.ts";

export interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

export const packageJson = JSON.parse(
  readFileSync(join(repoRoot, "plugin/package/package.json"), "utf8"),
) as {
  name: string;
  version: string;
  engines: { node: string };
  bin: Record<string, string>;
  [field: string]: unknown;
};
export const minNodeVersion = packageJson.engines.node.replace(/^>=/, "");

/** The cached binary of a tool that a script .ci/run calls has installed (`--check`: never installs). */
function installed(script: string): string {
  return execFileSync("bash", [join(repoRoot, "test/cluster", script), "--check"], {
    encoding: "utf8",
  }).trim();
}
/** The oldest Node.js the package supports (test/cluster/install-plugin-node.sh). */
export const minNode = () => installed("install-plugin-node.sh");
/** krew (test/cluster/build-krew.sh). */
export const krew = () => installed("build-krew.sh");

/** The caller's PATH without anything under the repository (its node_modules/.bin has Node 24). */
export function pathOutsideRepo(): string {
  return (process.env.PATH ?? "")
    .split(delimiter)
    .filter((p) => p !== "" && !p.startsWith(repoRoot))
    .join(delimiter);
}

/**
 * A user's environment: HOME, a PATH of `first` then the system's (minus the
 * repository), and the extras. No NODE_PATH, no npm_* variables from the npm
 * that started the tests, no NODE_OPTIONS.
 */
export function userEnv(home: string, first: string[], extra: NodeJS.ProcessEnv = {}) {
  return {
    HOME: home,
    PATH: [...first, pathOutsideRepo()].join(delimiter),
    LANG: "C.UTF-8",
    TMPDIR: process.env.TMPDIR ?? tmpdir(),
    ...extra,
  };
}

export function run(
  command: string,
  args: string[],
  opts: { env: NodeJS.ProcessEnv; cwd?: string; timeoutMs?: number },
): Promise<Run> {
  return new Promise((resolve) => {
    execFile(
      command,
      args,
      {
        env: opts.env,
        cwd: opts.cwd ?? opts.env.HOME,
        maxBuffer: 16 * 1024 * 1024,
        timeout: opts.timeoutMs ?? 0,
      },
      (err, stdout, stderr) => {
        const code = err ? (typeof err.code === "number" ? err.code : null) : 0;
        resolve({ code, stdout, stderr });
      },
    );
  });
}

/**
 * Runs a command that builds plugin/package/dist (npm pack, plugin/krew/release.ts)
 * under an exclusive lock: test files of two projects may pack at once, and the
 * build replaces that directory.
 */
export function underPackLock(command: string, args: string[], env: NodeJS.ProcessEnv) {
  const lock = join(
    tmpdir(),
    `edgeshift-plugin-pack-${createHash("sha256").update(repoRoot).digest("hex").slice(0, 12)}.lock`,
  );
  return run("flock", ["--wait", "300", lock, command, ...args], { env, cwd: repoRoot });
}

/** `npm pack ./plugin/package` into `dir`, as the README says; returns the tarball's path. */
export async function packPlugin(dir: string): Promise<string> {
  mkdirSync(dir, { recursive: true });
  const r = await underPackLock(
    "npm",
    ["pack", "./plugin/package", "--pack-destination", dir, "--loglevel=error"],
    process.env,
  );
  if (r.code !== 0) throw new Error(`npm pack failed (${r.code}):\n${r.stdout}\n${r.stderr}`);
  const tgz = readdirSync(dir).filter((f) => f.endsWith(".tgz"));
  if (tgz.length !== 1)
    throw new Error(`npm pack left ${tgz.join(", ") || "no tarball"} in ${dir}`);
  return join(dir, tgz[0] ?? "");
}

/**
 * `npm install -g` of the tarball into the empty `prefix`, on the oldest supported
 * Node, offline and with an empty cache: it can only succeed if the package needs
 * nothing but itself. Returns the installed bin's path.
 */
export async function installPlugin(tgz: string, prefix: string, home: string): Promise<string> {
  mkdirSync(home, { recursive: true });
  const env = userEnv(home, [dirname(minNode())]);
  const r = await run(
    "npm",
    [
      "install",
      "--global",
      "--prefix",
      prefix,
      "--cache",
      join(home, "npm-cache"),
      "--offline",
      "--no-audit",
      "--no-fund",
      tgz,
    ],
    { env },
  );
  if (r.code !== 0) throw new Error(`npm install failed (${r.code}):\n${r.stdout}\n${r.stderr}`);
  return join(prefix, "bin", "kubectl-edgeshift");
}
