// Makes a kubectl-edgeshift release, outside the tree:
//   node plugin/krew/release.ts --out DIR --base-url URL
// writes to DIR the npm package (`npm pack ./plugin/package`), the krew archive
// (that package's bundle and licenses plus the launcher beside this file) and the
// krew manifest: plugin/krew/edgeshift.yaml with the version, the archive's uri
// (URL/<archive name>, where the release will serve it) and sha256 filled in.
// The archive is reproducible (sorted entries, fixed owner and times), so the
// same commit gives the same sha256. Prints the three paths, one a line.
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { isAbsolute, join, relative, resolve } from "node:path";
import { parseArgs } from "node:util";
import { gzipSync } from "node:zlib";
import { parseDocument } from "yaml";

const here = import.meta.dirname;
const repo = resolve(here, "../..");
const { values } = parseArgs({
  options: { out: { type: "string" }, "base-url": { type: "string" } },
});
if (!values.out || !values["base-url"]) {
  console.error("usage: node plugin/krew/release.ts --out DIR --base-url URL");
  process.exit(2);
}
const out = resolve(values.out);
const inTree = relative(repo, out);
if (!inTree.startsWith("..") && !isAbsolute(inTree))
  throw new Error(`--out ${out} is inside the repository; release files stay out of the tree`);
const baseUrl = values["base-url"].replace(/\/+$/, "");

const pkg = JSON.parse(readFileSync(join(repo, "plugin/package/package.json"), "utf8")) as {
  name: string;
  version: string;
  engines: { node: string };
};
mkdirSync(out, { recursive: true });
// npm pack runs the package's prepack (build.ts); its output goes to stderr here,
// so stdout keeps only the paths this script prints.
execFileSync("npm", ["pack", "./plugin/package", "--pack-destination", out, "--loglevel=error"], {
  cwd: repo,
  stdio: ["ignore", process.stderr, "inherit"],
});
const npmTarball = join(out, `${pkg.name}-${pkg.version}.tgz`);

const staging = mkdtempSync(join(tmpdir(), "edgeshift-krew-"));
try {
  execFileSync("tar", ["-xzf", npmTarball, "-C", staging, "--strip-components=2", "package/dist"]);
  copyFileSync(join(here, "kubectl-edgeshift"), join(staging, "kubectl-edgeshift"));
  const files = [
    "kubectl-edgeshift",
    "kubectl-edgeshift.cjs",
    "LICENSE",
    "THIRD_PARTY_LICENSES.txt",
  ];
  const tar = execFileSync(
    "tar",
    [
      "--create",
      "--format=ustar",
      "--sort=name",
      "--owner=0",
      "--group=0",
      "--numeric-owner",
      "--mtime=@0",
      "--mode=u+rw,go+r,go-w",
      "-C",
      staging,
      ...files,
    ],
    { maxBuffer: 256 * 1024 * 1024 },
  );
  // zlib writes no name and a zero time in the gzip header: the bytes depend on the files only.
  const archive = gzipSync(tar, { level: 9 });
  const archiveName = `${pkg.name}-v${pkg.version}.tar.gz`;
  const archivePath = join(out, archiveName);
  writeFileSync(archivePath, archive);
  const sha256 = createHash("sha256").update(archive).digest("hex");

  const doc = parseDocument(readFileSync(join(here, "edgeshift.yaml"), "utf8"));
  // The template's header comment gives way to one that names the release.
  doc.commentBefore = ` krew plugin manifest for kubectl-edgeshift v${pkg.version}, made by plugin/krew/release.ts`;
  doc.setIn(["spec", "version"], `v${pkg.version}`);
  const caveats = String(doc.getIn(["spec", "caveats"]));
  doc.setIn(
    ["spec", "caveats"],
    caveats.replaceAll("RELEASE-NODE", pkg.engines.node.replace(/^>=/, "")),
  );
  const platforms = doc.getIn(["spec", "platforms"]) as { items: unknown[] };
  for (let i = 0; i < platforms.items.length; i++) {
    doc.setIn(["spec", "platforms", i, "uri"], `${baseUrl}/${archiveName}`);
    doc.setIn(["spec", "platforms", i, "sha256"], sha256);
  }
  const manifest = doc.toString();
  if (manifest.includes("RELEASE-"))
    throw new Error("plugin/krew/edgeshift.yaml has a placeholder this script does not fill");
  const manifestPath = join(out, "edgeshift.yaml");
  writeFileSync(manifestPath, manifest);
  console.log([npmTarball, archivePath, manifestPath].join("\n"));
} finally {
  rmSync(staging, { recursive: true, force: true });
}
