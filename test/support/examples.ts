// The test-case Jobs of manifests/examples/, loaded from their YAML and adapted
// only where a test cluster needs it (namespace, shorter runs, root on machines
// whose root lacks CAP_SYS_RESOURCE). Shared by the demo and the real-node tests.
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import type { V1Job } from "@kubernetes/client-node";
import { parse } from "yaml";
import { repoRoot } from "./operator.ts";

/**
 * Whether this process's root holds CAP_SYS_RESOURCE. Without it CRIU, running
 * as root, cannot read the rlimits of a process of another user (prlimit
 * answers EPERM: "Can't get rlimit 0: Operation not permitted" in
 * criu-dump.log), so no non-root container can be checkpointed on this machine.
 */
export async function hasCapSysResource(): Promise<boolean> {
  const status = await readFile("/proc/self/status", "utf8");
  const eff = /^CapEff:\s*([0-9a-f]+)$/m.exec(status)?.[1] ?? "0";
  return ((BigInt(`0x${eff}`) >> 24n) & 1n) === 1n;
}

export interface ExampleJobOptions {
  namespace: string;
  /** Values for env variables the workload already reads (an unknown name is an error). */
  env?: Record<string, string>;
  /** Put the pod on this node (spec.nodeName) instead of the example's preferred edge affinity. */
  nodeName?: string;
  /** Pod annotations to add (e.g. edgeshift.dev/migrate: "false"). */
  annotations?: Record<string, string>;
}

/**
 * The example Job `name`. On a machine whose root lacks CAP_SYS_RESOURCE the pod
 * runs as uid 0 (`asRoot`), every other hardening of the example (no
 * capabilities, read-only root, no privilege escalation, RuntimeDefault
 * seccomp) kept.
 */
export async function loadExampleJob(
  name: string,
  opts: ExampleJobOptions,
): Promise<{ job: V1Job; asRoot: boolean }> {
  const job = parse(
    await readFile(join(repoRoot, "manifests/examples", `${name}.yaml`), "utf8"),
  ) as V1Job;
  if (job.metadata?.name !== name) throw new Error(`${name}.yaml holds ${job.metadata?.name}`);
  job.metadata.namespace = opts.namespace;
  const template = job.spec?.template;
  const spec = template?.spec;
  const container = spec?.containers[0];
  if (!template || !spec || !container) throw new Error(`${name}: no pod template`);
  for (const [k, v] of Object.entries(opts.env ?? {})) {
    const e = container.env?.find((x) => x.name === k);
    if (!e) throw new Error(`${name}: the workload reads no ${k}`);
    e.value = v;
  }
  if (opts.nodeName) {
    delete spec.affinity;
    spec.nodeName = opts.nodeName;
  }
  if (opts.annotations) {
    template.metadata = template.metadata ?? {};
    template.metadata.annotations = { ...template.metadata.annotations, ...opts.annotations };
  }
  const asRoot = !(await hasCapSysResource());
  if (asRoot && spec.securityContext) {
    spec.securityContext.runAsNonRoot = false;
    spec.securityContext.runAsUser = 0;
  }
  return { job, asRoot };
}
