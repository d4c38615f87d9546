// Builds the kubectl-edgeshift npm package (its prepack script): plugin/main.ts and
// everything it imports (the ../operator/ modules, @kubernetes/client-node and its
// dependencies) bundled by esbuild into one file, dist/kubectl-edgeshift.cjs, with
// the licenses of what it bundles beside it. So the package has no dependencies,
// and installs and runs without a clone. Needs the repository's dev dependencies
// (esbuild, Node 24 for the TypeScript): `npm pack ./plugin/package` after `npm ci`.
import { chmodSync, copyFileSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { build } from "esbuild";

const here = import.meta.dirname;
const repo = resolve(here, "../..");
const dist = join(here, "dist");
const bin = join(dist, "kubectl-edgeshift.cjs");

interface Manifest {
  name?: string;
  version?: string;
  license?: string;
  engines?: { node?: string };
}
const readJson = (path: string) => JSON.parse(readFileSync(path, "utf8")) as Manifest;

const own = readJson(join(here, "package.json"));
const root = readJson(join(repo, "package.json"));
if (own.version !== root.version)
  throw new Error(
    `plugin/package/package.json has version ${own.version}, the repository ${root.version}`,
  );
const min = /^>=(\d+\.\d+\.\d+)$/.exec(own.engines?.node ?? "")?.[1];
if (!min) throw new Error(`engines.node must read ">=X.Y.Z", got "${own.engines?.node}"`);

rmSync(dist, { recursive: true, force: true });
const result = await build({
  absWorkingDir: repo,
  entryPoints: [join(here, "entry.ts")],
  outfile: bin,
  bundle: true,
  platform: "node",
  // CommonJS, not ESM: undici and other bundled CommonJS modules require() Node's
  // builtins, which esbuild's ESM output cannot do without a createRequire shim.
  format: "cjs",
  target: `node${min}`,
  define: { EDGESHIFT_MIN_NODE: JSON.stringify(min) },
  banner: { js: "#!/usr/bin/env node" },
  minify: true,
  // Libraries that print or compare class and function names still see the real ones.
  keepNames: true,
  legalComments: "none",
  metafile: true,
  logLevel: "warning",
});
chmodSync(bin, 0o755);

// Every bundled package keeps its license text: each node_modules/<name>/ an input came from.
const packages = new Set<string>();
for (const input of Object.keys(result.metafile.inputs)) {
  const m = /^(.*node_modules\/(?:@[^/]+\/)?[^/]+)\//.exec(input);
  if (m?.[1]) packages.add(m[1]);
}
// Public-domain dedications ask for no notice, so a package under one may ship no license file.
const NO_NOTICE = new Set(["Unlicense", "CC0-1.0", "0BSD"]);
const notices = [...packages].sort().map((dir) => {
  const p = readJson(join(repo, dir, "package.json"));
  const file = readdirSync(join(repo, dir)).find((f) => /^(licen[cs]e|copying|notice)/i.test(f));
  if (!file && !NO_NOTICE.has(p.license ?? ""))
    throw new Error(`${dir} (${p.license}) has no license file to ship with the bundle`);
  const text = file
    ? readFileSync(join(repo, dir, file), "utf8").trim()
    : `(no license file in the package: ${p.license} asks for no notice)`;
  return `${p.name}@${p.version} (${p.license})\n\n${text}\n`;
});
writeFileSync(
  join(dist, "THIRD_PARTY_LICENSES.txt"),
  `kubectl-edgeshift bundles these packages; their licenses follow.\n\n${notices.join(`\n${"-".repeat(78)}\n\n`)}`,
);
copyFileSync(join(repo, "LICENSE"), join(dist, "LICENSE"));
console.log(`built ${bin} for Node.js >= ${min} (${packages.size} bundled packages)`);
