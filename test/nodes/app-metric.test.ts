// Thresholds on the application's own metric, on real nodes: a small web
// application of our own (Node.js) counts the requests it serves and exposes
// the count on /metrics; the EdgeNode names that counter as a rate per minute.
// The real monitor, injected beside it under the restricted security context,
// reads it on localhost in the pod's network namespace. A load generator on
// cloud-1 sends requests through the application's Service until the rate
// passes the threshold: the decision engine creates the Migration with the
// metric, the value and the threshold in its reason.
import { afterEach, describe, expect, it } from "vitest";
import type { ApplicationThreshold, Migration } from "../../operator/api/v1alpha1.ts";
import { waitUntil } from "../cluster/process.ts";
import { cleanUp, listMigrations, nodesByRole } from "./moves.ts";
import { apply, cluster, patchEdgeNode, podReady, sharedEdgeNode, waitForPod } from "./support.ts";
import { loadPod, REQUEST_RATE, webApp } from "./web-app.ts";

const ID = "appm";
const NS = () => cluster().appNamespace;

/** Sets or removes the shared EdgeNode's application threshold; resolves once the operator has seen it. */
async function setThreshold(t: ApplicationThreshold | undefined): Promise<void> {
  const had = (await sharedEdgeNode()).spec.thresholds.application !== undefined;
  if (!t && !had) return;
  await patchEdgeNode([
    t
      ? { op: "add", path: "/spec/thresholds/application", value: t }
      : { op: "remove", path: "/spec/thresholds/application" },
  ]);
}

let made: string[] = [];
afterEach(async () => {
  await setThreshold(undefined);
  await cleanUp(NS(), ID, made);
  made = [];
}, 180_000);

describe("thresholds on the application's own metric, real nodes", () => {
  it("the request rate through the Service passes 100 a minute: the Migration is created with the series, the value and the threshold", async () => {
    const { edge, cloud } = nodesByRole();
    await setThreshold(REQUEST_RATE);
    await apply(...webApp(NS(), "appm-web", edge, ID));
    await waitForPod(NS(), "appm-web", "Ready", podReady);
    // Idle, the monitor reads the counter (a rate of 0): the EdgeNode counts a reading.
    await waitUntil(
      "the monitor reading the application's metric",
      async () =>
        ((await sharedEdgeNode()).status?.applicationMetric?.reading ?? 0) >= 1 || undefined,
      { timeoutMs: 60_000, intervalMs: 500 },
    );
    const mine = async () =>
      (await listMigrations(NS())).filter((m: Migration) => m.spec.podName === "appm-web");
    expect(await mine()).toEqual([]);
    // About 20 requests a second through the Service, from cloud-1 (no monitor there).
    await apply(loadPod(NS(), "appm-load", cloud, "appm-web", ID));
    const started = Date.now();
    const m = await waitUntil("the Migration for the request rate", async () => (await mine())[0], {
      timeoutMs: 120_000,
      intervalMs: 250,
    });
    made.push(m.metadata.name ?? "");
    const after = (Date.now() - started) / 1000;
    console.log(
      `[measure] request rate: Migration ${m.metadata.name} created ${after.toFixed(1)} s after the load started (window ${m.spec.reason?.windowSeconds} s): ${m.spec.reason?.series} at ${m.spec.reason?.value}, trigger ${m.spec.reason?.threshold}`,
    );
    expect(m.spec.reason).toMatchObject({
      type: "ThresholdExceeded",
      metric: "application",
      threshold: 100,
      series: 'web_requests_total{path="/"} rate per minute',
    });
    expect(m.spec.reason?.value).toBeGreaterThan(100);
    expect(m.spec.containers).toEqual(["web"]);
  }, 300_000);
});
