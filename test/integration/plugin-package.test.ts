// kubectl-edgeshift as a package, against the real API server: packed from
// plugin/package (`npm pack`, which bundles it with esbuild), installed with
// `npm install -g` into an empty prefix (offline, empty cache), and run on the
// oldest Node.js it supports with nothing of this repository on PATH; then the
// krew release archive, installed by krew into an empty KREW_ROOT. No operator
// runs here: the test writes the Migration's status itself, as the operator would.
import { createHash } from "node:crypto";
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { parse } from "yaml";
import {
  API_VERSION,
  EDGENODE_PLURAL,
  GROUP,
  MIGRATION_KIND,
  MIGRATION_PLURAL,
  type Migration,
  VERSION,
} from "../../operator/api/v1alpha1.ts";
import { migrationName } from "../../operator/decision/engine.ts";
import { mergePatch } from "../../operator/kube/patch.ts";
import { fullEdgeNode, fullEdgeNodeStatus } from "../support/api-fixtures.ts";
import { ignoreNotFound, kubeClients, uniqueName } from "../support/kube.ts";
import { createNamespace, createPod } from "../support/objects.ts";
import { repoRoot } from "../support/operator.ts";
import {
  installPlugin,
  krew,
  minNode,
  minNodeVersion,
  packageJson,
  packPlugin,
  pathOutsideRepo,
  run,
  underPackLock,
  userEnv,
} from "../support/plugin-package.ts";

const kubeconfig = inject("kubeconfig");
const kubectl = inject("kubectl");
const kube = kubeClients(kubeconfig);
const { custom, core } = kube;

const NS = uniqueName("plgpkg");
const EDGENODE = uniqueName("plgpkg-edge");
const NODE = "plgpkg-edge-1";
const MIGRATION = "sensor-a-mig";

let tmp = "";
let tgz = "";
let bin = "";
let home = "";
/** The user's environment: the installed package's bin/ and the oldest supported Node first on PATH. */
let env: NodeJS.ProcessEnv = {};

const plugin = (args: string[]) => run(bin, ["--kubeconfig", kubeconfig, ...args], { env });

beforeAll(async () => {
  tmp = mkdtempSync(join(tmpdir(), "plugin-package-"));
  home = join(tmp, "home");
  tgz = await packPlugin(join(tmp, "pack"));
  const prefix = join(tmp, "prefix");
  bin = await installPlugin(tgz, prefix, home);
  env = userEnv(home, [join(prefix, "bin"), dirname(minNode())], { KUBECONFIG: "/nonexistent" });

  await createNamespace({ kc: kube.kc, core, custom }, NS);
  await custom.createClusterCustomObject({
    group: GROUP,
    version: VERSION,
    plural: EDGENODE_PLURAL,
    body: fullEdgeNode(EDGENODE),
  });
  await custom.patchClusterCustomObjectStatus(
    {
      group: GROUP,
      version: VERSION,
      plural: EDGENODE_PLURAL,
      name: EDGENODE,
      body: { status: fullEdgeNodeStatus() },
    },
    mergePatch,
  );
  await custom.createNamespacedCustomObject({
    group: GROUP,
    version: VERSION,
    plural: MIGRATION_PLURAL,
    namespace: NS,
    body: {
      apiVersion: API_VERSION,
      kind: MIGRATION_KIND,
      metadata: { name: MIGRATION },
      spec: { podName: "sensor-a" },
    },
  });
  await custom.patchNamespacedCustomObjectStatus(
    {
      group: GROUP,
      version: VERSION,
      plural: MIGRATION_PLURAL,
      namespace: NS,
      name: MIGRATION,
      body: {
        status: {
          phase: "Succeeded",
          edgeNode: EDGENODE,
          policy: "checkpoint",
          sourceNode: NODE,
          targetNode: "plgpkg-cloud-1",
          restoredPod: "sensor-a-restored",
          timestamps: {
            created: "2026-03-01T10:00:00Z",
            checkpointStarted: "2026-03-01T10:00:01Z",
            checkpointed: "2026-03-01T10:00:02Z",
            imagePushed: "2026-03-01T10:00:05Z",
            restoreStarted: "2026-03-01T10:00:05Z",
            restored: "2026-03-01T10:00:09Z",
            cutOver: "2026-03-01T10:00:10Z",
            finished: "2026-03-01T10:00:10Z",
          },
          durationSeconds: 10,
          duration: "10.0s",
          conditions: [
            {
              type: "Succeeded",
              status: "True",
              reason: "CutOver",
              message: "removed the original pod",
              lastTransitionTime: "2026-03-01T10:00:10Z",
            },
          ],
        },
      },
    },
    mergePatch,
  );
});

afterAll(async () => {
  await ignoreNotFound(
    custom.deleteClusterCustomObject({
      group: GROUP,
      version: VERSION,
      plural: EDGENODE_PLURAL,
      name: EDGENODE,
    }),
  );
  await ignoreNotFound(core.deleteNamespace({ name: NS }));
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

describe("the kubectl-edgeshift package", () => {
  it("holds one bundled file, its licenses and package.json: no TypeScript, no dependencies", async () => {
    const listing = await run("tar", ["-tzf", tgz], { env });
    expect(listing.code).toBe(0);
    expect(listing.stdout.trim().split("\n").sort()).toEqual([
      "package/README.md",
      "package/dist/LICENSE",
      "package/dist/THIRD_PARTY_LICENSES.txt",
      "package/dist/kubectl-edgeshift.cjs",
      "package/package.json",
    ]);
    const manifest = JSON.parse(
      (await run("tar", ["-xzOf", tgz, "package/package.json"], { env })).stdout,
    ) as Record<string, unknown>;
    for (const field of [
      "dependencies",
      "devDependencies",
      "optionalDependencies",
      "peerDependencies",
      "bundleDependencies",
      "bundledDependencies",
    ])
      expect(manifest, field).not.toHaveProperty(field);
    expect(manifest).toMatchObject({
      name: "kubectl-edgeshift",
      version: (JSON.parse(readFileSync(join(repoRoot, "package.json"), "utf8")) as Manifest)
        .version,
      bin: { "kubectl-edgeshift": "dist/kubectl-edgeshift.cjs" },
      engines: { node: `>=${minNodeVersion}` },
      license: "Apache-2.0",
    });
    const readme = (await run("tar", ["-xzOf", tgz, "package/README.md"], { env })).stdout;
    expect(readme).toContain(`needs Node.js ${minNodeVersion} or newer`);

    // What npm installed: the package alone, nothing under a node_modules of its own.
    const installed = join(dirname(dirname(bin)), "lib/node_modules");
    expect(readdirSync(installed)).toEqual(["kubectl-edgeshift"]);
    expect(existsSync(join(installed, "kubectl-edgeshift/node_modules"))).toBe(false);
    expect(readdirSync(join(installed, "kubectl-edgeshift/dist")).sort()).toEqual([
      "LICENSE",
      "THIRD_PARTY_LICENSES.txt",
      "kubectl-edgeshift.cjs",
    ]);
  });

  it("bundles only production dependencies, each with its license text", async () => {
    const notices = readFileSync(
      join(
        dirname(dirname(bin)),
        "lib/node_modules/kubectl-edgeshift/dist/THIRD_PARTY_LICENSES.txt",
      ),
      "utf8",
    );
    const bundled = [...notices.matchAll(/^(@?[^@\s]+)@(\d[^\s]*) \(/gm)].map((m) => m[1] ?? "");
    expect(bundled).toContain("@kubernetes/client-node");
    expect(bundled).toContain("undici");
    // npm's own list of the production tree (dev dependencies left out).
    const ls = await run("npm", ["ls", "--omit=dev", "--all", "--parseable"], {
      env: process.env,
      cwd: repoRoot,
    });
    const production = new Set(
      ls.stdout
        .trim()
        .split("\n")
        .map((p) => /node_modules\/((?:@[^/]+\/)?[^/]+)$/.exec(p)?.[1])
        .filter((n): n is string => n !== undefined),
    );
    const root = JSON.parse(readFileSync(join(repoRoot, "package.json"), "utf8")) as Manifest;
    for (const name of bundled) {
      expect(production.has(name), `${name} is in the production tree`).toBe(true);
      expect(Object.keys(root.devDependencies ?? {})).not.toContain(name);
    }
    // Every bundled package's notice has its license text, not only a name, unless
    // its license is a public-domain dedication that asks for none.
    const blocks = notices.split(/^-{78}$/m);
    expect(blocks).toHaveLength(bundled.length);
    for (const block of blocks) {
      if (/^\S+ \((Unlicense|CC0-1\.0|0BSD)\)$/m.test(block)) continue;
      expect(block.trim().length, block.slice(0, 80)).toBeGreaterThan(300);
    }
  });

  it(`runs on Node.js ${minNodeVersion}, the oldest it supports, and says so on an older one`, async () => {
    expect((await run("node", ["--version"], { env })).stdout.trim()).toBe(`v${minNodeVersion}`);
    const help = await run("kubectl-edgeshift", ["--help"], { env });
    expect(help).toMatchObject({ code: 0, stderr: "" });
    expect(help.stdout).toMatch(/^kubectl edgeshift: watch and drive edgeshift migrations\n/);
    const bad = await run("kubectl-edgeshift", ["frobnicate"], { env });
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('error: unknown command "frobnicate"');

    // The system's own node (Debian bookworm's here is v20): refused with the
    // version it needs, before any library loads, if it is older.
    const system = { ...env, PATH: pathOutsideRepo() };
    const systemVersion = (await run("node", ["--version"], { env: system })).stdout.trim();
    const older = systemVersion.localeCompare(`v${minNodeVersion}`, "en", { numeric: true }) < 0;
    const r = await run(bin, ["--help"], { env: system });
    if (older) {
      expect(r).toMatchObject({
        code: 1,
        stdout: "",
        stderr: expect.stringContaining(
          `kubectl-edgeshift needs Node.js ${minNodeVersion} or newer; this is ${systemVersion}`,
        ),
      });
    } else {
      expect(r).toMatchObject({ code: 0, stderr: "" });
    }
  });

  it("status: shows the EdgeNode and the migration (as a kubectl plugin found on PATH)", async () => {
    const r = await run(kubectl, ["edgeshift", "status"], {
      env: { ...env, KUBECONFIG: kubeconfig },
    });
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(new RegExp(`^${EDGENODE}\\s+True\\s+False\\s+3\\s+`, "m"));
    expect(r.stdout).toMatch(
      new RegExp(
        `^${NS}\\s+${MIGRATION}\\s+sensor-a\\s+Succeeded\\s+${NODE}\\s+plgpkg-cloud-1`,
        "m",
      ),
    );
  });

  it("list: the namespace's migrations", async () => {
    const r = await plugin(["list", "-n", NS]);
    expect(r).toMatchObject({ code: 0, stderr: "" });
    const lines = r.stdout.trim().split("\n");
    expect(lines).toHaveLength(2);
    expect(lines[1]).toMatch(
      new RegExp(
        `^${MIGRATION}\\s+sensor-a\\s+ToCloud\\s+Succeeded\\s+${NODE}\\s+plgpkg-cloud-1\\s+checkpoint\\s+Manual\\s+10\\.0s\\s+\\d+s$`,
      ),
    );
  });

  it("describe: one migration with its timeline", async () => {
    const r = await plugin(["describe", MIGRATION, "-n", NS]);
    expect(r).toMatchObject({ code: 0, stderr: "" });
    expect(r.stdout).toMatch(/^Phase:\s+Succeeded$/m);
    expect(r.stdout).toMatch(/Restored\s+2026-03-01T10:00:09Z\s+\+9\.0s\s+4\.0s \(restore\)/);
    const missing = await plugin(["describe", "nope", "-n", NS]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain(`migration "nope" not found in namespace ${NS}`);
  });

  it("migrate: creates the Migration, then follows it through a watch until --timeout", async () => {
    const pod = await createPod({ kc: kube.kc, core, custom }, NS, "sensor-m", NODE);
    const name = migrationName("sensor-m", pod.metadata?.uid ?? "");
    const created = await plugin(["migrate", "sensor-m", "-n", NS, "--no-follow"]);
    expect(created).toMatchObject({ code: 0, stderr: "" });
    expect(created.stdout).toContain(`Created migration ${NS}/${name} for pod sensor-m on ${NODE}`);
    const m = (await custom.getNamespacedCustomObject({
      group: GROUP,
      version: VERSION,
      plural: MIGRATION_PLURAL,
      namespace: NS,
      name,
    })) as Migration;
    expect(m.spec).toMatchObject({ podName: "sensor-m", reason: { type: "Manual" } });
    expect(m.metadata.labels?.["app.kubernetes.io/managed-by"]).toBe("kubectl-edgeshift");

    // No operator runs here, so it stays Pending: the plugin watches until the timeout.
    const followed = await plugin(["migrate", "sensor-m", "-n", NS, "--timeout", "2s"]);
    expect(followed.code).toBe(124);
    expect(followed.stdout).toContain(`Migration ${NS}/${name} of this pod is already running`);
    expect(followed.stdout).toMatch(/\+\d+\.\ds\s+Pending\s+waiting for the operator/);
    expect(followed.stderr).toContain(`migration ${NS}/${name} is still Pending and goes on`);
  });
});

describe("the krew release", () => {
  it("installs with krew from the manifest and archive that plugin/krew/release.ts makes, and runs", async () => {
    const release = async (out: string) => {
      const r = await underPackLock(
        "npx",
        [
          "node",
          "plugin/krew/release.ts",
          "--out",
          out,
          "--base-url",
          "https://downloads.example.com/edgeshift/v1",
        ],
        process.env,
      );
      expect(r.code, r.stderr).toBe(0);
      return r.stdout.trim().split("\n");
    };
    const [npmTarball, archive, manifestPath] = await release(join(tmp, "release"));
    const version = `v${packageJson.version}`;
    expect(npmTarball).toBe(join(tmp, "release", `kubectl-edgeshift-${packageJson.version}.tgz`));
    expect(archive).toBe(join(tmp, "release", `kubectl-edgeshift-${version}.tar.gz`));
    const sha256 = createHash("sha256")
      .update(readFileSync(archive ?? ""))
      .digest("hex");
    const manifest = parse(readFileSync(manifestPath ?? "", "utf8")) as KrewPlugin;
    expect(manifest).toMatchObject({
      apiVersion: "krew.googlecontainertools.github.com/v1alpha2",
      kind: "Plugin",
      metadata: { name: "edgeshift" },
      spec: { version },
    });
    expect(manifest.spec.caveats.replace(/\s+/g, " ")).toContain(
      `version ${minNodeVersion} or newer`,
    );
    for (const p of manifest.spec.platforms) {
      expect(p.uri).toBe(
        `https://downloads.example.com/edgeshift/v1/kubectl-edgeshift-${version}.tar.gz`,
      );
      expect(p.sha256).toBe(sha256);
    }
    // The same commit gives the same archive, byte for byte.
    const [, again] = await release(join(tmp, "release-again"));
    expect(
      createHash("sha256")
        .update(readFileSync(again ?? ""))
        .digest("hex"),
    ).toBe(sha256);

    // krew as it installs itself: kubectl-krew on PATH, run as `kubectl krew`.
    const krewRoot = join(tmp, "krew");
    const krewBin = join(tmp, "krew-bin");
    mkdirSync(krewBin);
    symlinkSync(krew(), join(krewBin, "kubectl-krew"));
    const krewEnv = userEnv(home, [join(krewRoot, "bin"), krewBin, dirname(minNode())], {
      KREW_ROOT: krewRoot,
      KREW_NO_UPGRADE_CHECK: "1",
      KUBECONFIG: kubeconfig,
    });
    const install = await run(
      kubectl,
      ["krew", "install", `--manifest=${manifestPath}`, `--archive=${archive}`],
      { env: krewEnv },
    );
    expect(install.stderr).toContain("Installed plugin: edgeshift");
    expect(install.code).toBe(0);
    expect(readdirSync(join(krewRoot, "store/edgeshift", version)).sort()).toEqual([
      "LICENSE",
      "THIRD_PARTY_LICENSES.txt",
      "kubectl-edgeshift",
      "kubectl-edgeshift.cjs",
    ]);

    const r = await run(kubectl, ["edgeshift", "list", "-n", NS], { env: krewEnv });
    expect(r).toMatchObject({ code: 0, stderr: "" });
    expect(r.stdout).toMatch(
      new RegExp(`^${MIGRATION}\\s+sensor-a\\s+ToCloud\\s+Succeeded\\s+`, "m"),
    );
  });
});

interface Manifest {
  version?: string;
  devDependencies?: Record<string, string>;
}

interface KrewPlugin {
  spec: {
    version: string;
    caveats: string;
    platforms: { uri: string; sha256: string }[];
  };
}
