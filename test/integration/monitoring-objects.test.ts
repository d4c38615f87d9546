// manifests/prometheus/ applied as the README's Monitoring section says, to an API
// server that has the Prometheus Operator's own CRDs (v0.89.0, from its Go module:
// test/cluster/fetch-monitoring-crds.sh, run before the tests): the ServiceMonitor,
// the PodMonitor and the PrometheusRule pass the operator's schemas with strict
// field validation, and so do the chart's copies with prometheus.monitors and
// prometheus.rules on. What they select and what the rules say is proven by a
// real Prometheus in test/nodes/prometheus.test.ts and test/unit/prometheus-*.
import { execFile } from "node:child_process";
import { mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { helmRunner } from "../cluster/helm.ts";
import { waitUntil } from "../cluster/process.ts";

const run = promisify(execFile);
const root = resolve(import.meta.dirname, "../..");
const kubeconfig = inject("kubeconfig");
const kubectlBin = inject("kubectl");
const NS = "edgeshift-system";

const kubectl = async (args: string[], input?: string) =>
  new Promise<{ code: number; stdout: string; stderr: string }>((res) => {
    const child = execFile(
      kubectlBin,
      ["--kubeconfig", kubeconfig, ...args],
      { cwd: root, maxBuffer: 16 * 1024 * 1024 },
      (err, stdout, stderr) =>
        res({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
    if (input !== undefined) child.stdin?.end(input);
  });

let crdDir = "";
let home = "";

beforeAll(async () => {
  const { stdout } = await run("bash", [
    join(root, "test/cluster/fetch-monitoring-crds.sh"),
    "--installed",
  ]);
  crdDir = stdout.trim().split("\n").at(-1) ?? "";
  home = await mkdtemp(join(tmpdir(), "edgeshift-monitoring-"));
  expect((await kubectl(["apply", "--server-side", "-f", crdDir])).code).toBe(0);
  await waitUntil(
    "the monitoring CRDs to be Established",
    async () => {
      const r = await kubectl([
        "get",
        "crd",
        "servicemonitors.monitoring.coreos.com",
        "podmonitors.monitoring.coreos.com",
        "prometheusrules.monitoring.coreos.com",
        "-o",
        'jsonpath={range .items[*]}{.status.conditions[?(@.type=="Established")].status}{" "}{end}',
      ]);
      return r.stdout.trim() === "True True True" ? true : undefined;
    },
    { timeoutMs: 60_000, intervalMs: 200 },
  );
  const ns = await kubectl(["get", "namespace", NS]);
  if (ns.code !== 0) expect((await kubectl(["create", "namespace", NS])).code).toBe(0);
});

afterAll(async () => {
  await kubectl(["delete", "--ignore-not-found", "-f", join(root, "manifests/prometheus")]);
  if (crdDir) {
    for (const f of await readdir(crdDir))
      await kubectl(["delete", "--ignore-not-found", "-f", join(crdDir, f)]);
  }
  if (home) await rm(home, { recursive: true, force: true });
});

describe("the Prometheus Operator objects", () => {
  it("apply as the README says, strictly validated by the operator's CRDs", async () => {
    const r = await kubectl(["apply", "--validate=strict", "-f", "manifests/prometheus/"]);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    const got = await kubectl([
      "-n",
      NS,
      "get",
      "servicemonitors,podmonitors,prometheusrules",
      "-o",
      "name",
    ]);
    expect(got.stdout.trim().split("\n").sort()).toEqual([
      "podmonitor.monitoring.coreos.com/edgeshift-agent",
      "prometheusrule.monitoring.coreos.com/edgeshift",
      "servicemonitor.monitoring.coreos.com/edgeshift-operator",
    ]);
  });

  it("notices a field the operator's schema does not have", async () => {
    const bad = [
      "apiVersion: monitoring.coreos.com/v1",
      "kind: ServiceMonitor",
      "metadata: {name: typo, namespace: edgeshift-system}",
      "spec:",
      "  selector: {matchLabels: {app: x}}",
      "  endpoints: [{port: http-metrics, intervall: 15s}]",
    ].join("\n");
    const r = await kubectl(["apply", "--validate=strict", "--dry-run=server", "-f", "-"], bad);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain("intervall");
  });

  it("the chart renders the same objects with prometheus.monitors and prometheus.rules on", async () => {
    const helm = helmRunner(inject("helm"), home);
    const t = await helm([
      "template",
      "edgeshift",
      "charts/edgeshift",
      "-n",
      NS,
      "--set",
      "prometheus.monitors=true",
      "--set",
      "prometheus.rules=true",
      "--show-only",
      "templates/prometheus.yaml",
    ]);
    expect(t.stderr).toBe("");
    const r = await kubectl(
      ["apply", "--dry-run=server", "--validate=strict", "-f", "-"],
      t.stdout,
    );
    expect(r.stderr).toBe("");
    expect(r.stdout).toContain("servicemonitor.monitoring.coreos.com/edgeshift-operator");
    expect(r.stdout).toContain("podmonitor.monitoring.coreos.com/edgeshift-agent");
    expect(r.stdout).toContain("prometheusrule.monitoring.coreos.com/edgeshift");
  });
});
