// The packed kubectl-edgeshift on the real nodes, as a user runs it: `npm pack`
// of plugin/package, `npm install -g` into an empty prefix (offline, empty cache),
// run on the oldest Node.js it supports with nothing of this repository on PATH.
// Its `migrate` moves a busybox pod from edge-1 to cloud-1 and follows the
// migration to its end; then its `describe`, `list` and `status` show the
// Succeeded Migration the operator recorded.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { migrationName } from "../../operator/decision/engine.ts";
import {
  installPlugin,
  minNode,
  minNodeVersion,
  packPlugin,
  run,
  userEnv,
} from "../support/plugin-package.ts";
import { cleanUp, getMigration, nodesByRole } from "./moves.ts";
import { apply, busyboxPod, cluster, podReady, waitForPod } from "./support.ts";

const ID = "plugin-package";
const POD = "pkg-counter";
const NS = () => cluster().appNamespace;

let tmp = "";
let env: NodeJS.ProcessEnv = {};
const migrations: string[] = [];

beforeAll(async () => {
  tmp = mkdtempSync(join(tmpdir(), "plugin-package-"));
  const home = join(tmp, "home");
  const tgz = await packPlugin(join(tmp, "pack"));
  const prefix = join(tmp, "prefix");
  await installPlugin(tgz, prefix, home);
  env = userEnv(home, [join(prefix, "bin"), dirname(minNode())], {
    KUBECONFIG: cluster().kubeconfig,
  });
});

afterAll(async () => {
  await cleanUp(NS(), ID, migrations);
  if (tmp) rmSync(tmp, { recursive: true, force: true });
}, 120_000);

describe("the installed kubectl-edgeshift package on real nodes", () => {
  it(`migrate (on Node.js ${minNodeVersion}) moves a pod to the cloud node and follows it to Succeeded; describe and list show it`, async () => {
    expect((await run("node", ["--version"], { env })).stdout.trim()).toBe(`v${minNodeVersion}`);
    const { edge, cloud } = nodesByRole();
    await apply(
      busyboxPod(
        NS(),
        POD,
        edge,
        'i=0; while true; do i=$((i+1)); echo "tick $i"; sleep 0.2; done',
        {
          labels: { test: ID },
        },
      ),
    );
    const pod = await waitForPod(NS(), POD, "Ready", podReady);
    const name = migrationName(POD, pod.metadata?.uid ?? "");
    migrations.push(name);

    const moved = await run(
      "kubectl-edgeshift",
      ["migrate", POD, "-n", NS(), "--to", cloud, "--timeout", "4m"],
      { env, timeoutMs: 300_000 },
    );
    expect(moved.code, `${moved.stdout}\n${moved.stderr}`).toBe(0);
    expect(moved.stdout).toContain(
      `Created migration ${NS()}/${name} for pod ${POD} on ${edge} (policy: the EdgeNode's, target: ${cloud})`,
    );
    const restored = (await getMigration(NS(), name)).status?.restoredPod ?? "";
    expect(restored).not.toBe("");
    expect(moved.stdout).toMatch(
      new RegExp(`\\+\\S+\\s+Succeeded\\s+pod ${POD} now runs as ${restored} on ${cloud}`),
    );
    expect(moved.stdout).toContain(`Migration ${NS()}/${name} succeeded in `);

    const m = await getMigration(NS(), name);
    expect(m.status).toMatchObject({ phase: "Succeeded", sourceNode: edge, targetNode: cloud });
    expect(m.spec.reason?.type).toBe("Manual");
    expect(m.metadata.labels?.["app.kubernetes.io/managed-by"]).toBe("kubectl-edgeshift");

    const described = await run("kubectl-edgeshift", ["describe", name, "-n", NS()], { env });
    expect(described).toMatchObject({ code: 0, stderr: "" });
    expect(described.stdout).toMatch(/^Phase:\s+Succeeded$/m);
    expect(described.stdout).toMatch(new RegExp(`^Source node:\\s+${edge}$`, "m"));
    expect(described.stdout).toMatch(new RegExp(`^Target node:\\s+${cloud}$`, "m"));
    expect(described.stdout).toMatch(new RegExp(`^Restored pod:\\s+${restored}$`, "m"));
    expect(described.stdout).toMatch(/Cut over\s+\S+\s+\+\S+/);

    const listed = await run("kubectl-edgeshift", ["list", "-n", NS()], { env });
    expect(listed).toMatchObject({ code: 0, stderr: "" });
    expect(listed.stdout).toMatch(
      new RegExp(
        `^${name}\\s+${POD}\\s+ToCloud\\s+Succeeded\\s+${edge}\\s+${cloud}\\s+checkpoint\\s+Manual\\s+`,
        "m",
      ),
    );

    const status = await run("kubectl-edgeshift", ["status"], { env });
    expect(status).toMatchObject({ code: 0, stderr: "" });
    expect(status.stdout).toMatch(
      new RegExp(
        `^${NS()}\\s+${name}\\s+${POD}\\s+Succeeded\\s+${edge}\\s+${cloud}\\s+Manual\\s+`,
        "m",
      ),
    );
  });
});
