// Every labelled series that a dashboard panel or an alert queries exists at 0
// as soon as its component starts, before anything has happened: Prometheus'
// "avoid missing metrics". Without it, an alert on failures has no series to
// evaluate until the first failure, and rate() over a quiet label is empty
// rather than 0 (test/nodes/prometheus.test.ts shows it on a live Prometheus).
import { KubeConfig } from "@kubernetes/client-node";
import { pino } from "pino";
import { Registry } from "prom-client";
import { describe, expect, it } from "vitest";
import { agentMetrics } from "../../migration/agent/controller.ts";
import { Metric } from "../api/v1alpha1.ts";
import { DecisionController, type DecisionControllerDeps } from "../decision/controller.ts";
import { injectionMetrics } from "../edgenode/podwatcher.ts";
import { informerMetrics, SupervisedInformer } from "../kube/informer.ts";
import { queueMetrics, WorkQueue } from "../kube/workqueue.ts";
import { migrationMetrics } from "../migration/controller.ts";

/** The exposition's sample lines, as Prometheus would scrape them. */
async function samples(registry: Registry): Promise<Set<string>> {
  const text = await registry.metrics();
  return new Set(text.split("\n").filter((l) => l && !l.startsWith("#")));
}

describe("series at 0 from the start", () => {
  it("migrations: every policy and result, every step's histogram", async () => {
    const registry = new Registry();
    migrationMetrics(registry);
    const s = await samples(registry);
    for (const policy of ["checkpoint", "restart"]) {
      for (const result of ["succeeded", "failed"]) {
        expect(s).toContain(`edgeshift_migrations_total{policy="${policy}",result="${result}"} 0`);
      }
    }
    for (const step of ["checkpoint", "push", "restore", "cutover", "total"]) {
      expect(s).toContain(`edgeshift_migration_step_duration_seconds_count{step="${step}"} 0`);
      expect(s).toContain(
        `edgeshift_migration_step_duration_seconds_bucket{le="+Inf",step="${step}"} 0`,
      );
    }
    expect(s).toContain("edgeshift_checkpoint_size_bytes_count 0");
  });

  it("work queues: depth, adds, retries and each reconcile result, per queue", async () => {
    const registry = new Registry();
    const metrics = queueMetrics(registry);
    new WorkQueue({ name: "migrations", metrics });
    new WorkQueue({ name: "edgenodes", metrics });
    const s = await samples(registry);
    for (const queue of ["migrations", "edgenodes"]) {
      expect(s).toContain(`edgeshift_workqueue_depth{queue="${queue}"} 0`);
      expect(s).toContain(`edgeshift_workqueue_adds_total{queue="${queue}"} 0`);
      expect(s).toContain(`edgeshift_workqueue_retries_total{queue="${queue}"} 0`);
      for (const result of ["success", "error", "requeue"]) {
        expect(s).toContain(
          `edgeshift_reconcile_duration_seconds_count{queue="${queue}",result="${result}"} 0`,
        );
      }
    }
  });

  it("work queues: the zeros are the start, and counts move from there", async () => {
    const registry = new Registry();
    const q = new WorkQueue({ name: "t", metrics: queueMetrics(registry), baseDelayMs: 60_000 });
    let failed!: () => void;
    const once = new Promise<void>((r) => {
      failed = r;
    });
    q.add("a");
    q.start(async () => {
      failed();
      throw new Error("boom");
    });
    await once;
    await q.shutdown();
    const s = await samples(registry);
    expect(s).toContain(`edgeshift_workqueue_adds_total{queue="t"} 1`);
    expect(s).toContain(`edgeshift_workqueue_retries_total{queue="t"} 1`);
    expect(s).toContain(`edgeshift_reconcile_duration_seconds_count{queue="t",result="error"} 1`);
    expect(s).toContain(`edgeshift_reconcile_duration_seconds_count{queue="t",result="success"} 0`);
    expect(s).toContain(`edgeshift_reconcile_duration_seconds_count{queue="t",result="requeue"} 0`);
  });

  it("informers: restarts per resource", async () => {
    const registry = new Registry();
    const metrics = informerMetrics(registry);
    for (const resource of ["pods", "nodes"]) {
      new SupervisedInformer({
        kubeConfig: new KubeConfig(),
        resource,
        path: `/api/v1/${resource}`,
        list: async () => ({ items: [] }),
        onChange: () => {},
        log: pino({ level: "silent" }),
        metrics,
      });
    }
    const s = await samples(registry);
    expect(s).toContain(`edgeshift_informer_restarts_total{resource="pods"} 0`);
    expect(s).toContain(`edgeshift_informer_restarts_total{resource="nodes"} 0`);
  });

  it("decisions: every metric and result, before the controller starts", async () => {
    const registry = new Registry();
    // Constructed only: nothing here talks to NATS or the API server before start().
    new DecisionController({
      kubeConfig: new KubeConfig(),
      registry,
      log: pino({ level: "silent" }),
      signingKey: Buffer.alloc(32),
    } as unknown as DecisionControllerDeps);
    const s = await samples(registry);
    for (const metric of Object.values(Metric)) {
      for (const result of ["created", "exists", "error"]) {
        expect(s).toContain(`edgeshift_decisions_total{metric="${metric}",result="${result}"} 0`);
      }
    }
    expect(s).toContain("edgeshift_decision_latency_seconds_count 0");
    expect(s).toContain(`edgeshift_samples_dropped_total{reason="stale"} 0`);
  });

  it("monitor injections: success and error", async () => {
    const registry = new Registry();
    injectionMetrics(registry);
    const s = await samples(registry);
    expect(s).toContain(`edgeshift_monitor_injections_total{result="success"} 0`);
    expect(s).toContain(`edgeshift_monitor_injections_total{result="error"} 0`);
    expect(s).toContain("edgeshift_monitor_injection_seconds_count 0");
  });

  it("edge agent: each step's duration and successes, both byte kinds", async () => {
    const registry = new Registry();
    agentMetrics(registry);
    const s = await samples(registry);
    for (const step of ["checkpoint", "push"]) {
      expect(s).toContain(`edgeshift_agent_step_duration_seconds_count{step="${step}"} 0`);
      expect(s).toContain(`edgeshift_agent_steps_total{step="${step}",result="success"} 0`);
    }
    expect(s).toContain(`edgeshift_agent_bytes_total{kind="archive"} 0`);
    expect(s).toContain(`edgeshift_agent_bytes_total{kind="uploaded"} 0`);
  });
});
