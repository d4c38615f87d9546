// Compiles a TypeScript entry point (and what it imports) to JavaScript, the
// form the agent runs in production, for child processes whose memory a test
// or the bench measures. Running .ts directly would add Node's type-stripping
// compiler (~35 MB of RSS) to every number.
import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdir, rm } from "node:fs/promises";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";

const run = promisify(execFile);
const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), "../..");

export interface CompiledEntry {
  /** The .js file to run with process.execPath. */
  path: string;
  dispose(): Promise<void>;
}

export async function compileEntry(entryTs: string): Promise<CompiledEntry> {
  // Inside node_modules/.cache so the output resolves the repo's dependencies.
  const outDir = join(
    repoRoot,
    "node_modules",
    ".cache",
    `edgeshift-build-${randomBytes(4).toString("hex")}`,
  );
  await mkdir(outDir, { recursive: true });
  const rel = relative(repoRoot, resolve(repoRoot, entryTs));
  try {
    await run(
      process.execPath,
      [
        join(repoRoot, "node_modules/typescript/bin/tsc"),
        "--ignoreConfig",
        "--noCheck",
        "--outDir",
        outDir,
        "--rootDir",
        repoRoot,
        "--module",
        "nodenext",
        "--moduleResolution",
        "nodenext",
        "--target",
        "es2024",
        "--allowImportingTsExtensions",
        "--rewriteRelativeImportExtensions",
        "--verbatimModuleSyntax",
        "--skipLibCheck",
        "--types",
        "node",
        rel,
      ],
      { cwd: repoRoot },
    );
  } catch (err) {
    await rm(outDir, { recursive: true, force: true });
    throw err;
  }
  return {
    path: join(outDir, rel.replace(/\.ts$/, ".js")),
    dispose: () => rm(outDir, { recursive: true, force: true }),
  };
}
