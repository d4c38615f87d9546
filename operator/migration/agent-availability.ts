// Whether a checkpoint Migration can still expect its edge agent. Without a
// Ready agent on the source node nobody will ever take the checkpoint, and
// waiting out EDGESHIFT_CHECKPOINT_TIMEOUT (minutes) only delays the answer.
//
// The rule is careful not to fail a Migration an agent could still serve:
// - once the agent has written anything (a condition, a timestamp, an archive
//   or a digest) it has the Migration, and the checkpoint timeout governs;
// - before that, the agent gets AGENT_GRACE_MS from validation to pick it up;
// - an agent pod that turned unready (or was created, or began terminating)
//   less than AGENT_GRACE_MS ago may be a restart or a rollout: wait for it.
// Pure, so the rules are unit-tested; the controller lists the agent pods.
import type { V1Pod } from "@kubernetes/client-node";
import type { Migration } from "../api/v1alpha1.ts";
import { getCondition } from "../kube/conditions.ts";

/** How long an agent may take to pick a Migration up, and to come back after a restart. */
export const AGENT_GRACE_MS = 30_000;

const time = (t: Date | string | undefined): number => (t ? new Date(t).getTime() : Number.NaN);

/** True when the agent has reported nothing on `m` for AGENT_GRACE_MS since validation. */
export function agentCheckDue(m: Migration, now: number, graceMs = AGENT_GRACE_MS): boolean {
  const s = m.status;
  const conds = s?.conditions;
  const reported =
    getCondition(conds, "Checkpointed") !== undefined ||
    getCondition(conds, "ImagePushed") !== undefined ||
    !!s?.timestamps?.checkpointStarted ||
    (s?.containers ?? []).some((c) => c.archivePath || c.digest);
  if (reported) return false;
  // Validation sets Succeeded Unknown; a Migration validated long after its
  // creation (an operator that was down) still gives the agent its grace.
  const validated = time(getCondition(conds, "Succeeded")?.lastTransitionTime);
  const since = Number.isNaN(validated) ? time(s?.timestamps?.created) : validated;
  return Number.isNaN(since) || now - since >= graceMs;
}

function notReady(p: V1Pod): { since: number; why: string } | undefined {
  if (p.metadata?.deletionTimestamp)
    return { since: time(p.metadata.deletionTimestamp), why: "terminating" };
  const ready = p.status?.conditions?.find((c) => c.type === "Ready");
  if (ready?.status === "True") return undefined;
  const since = time(ready?.lastTransitionTime ?? p.metadata?.creationTimestamp);
  const waiting = (p.status?.containerStatuses ?? []).flatMap((c) => {
    const w = c.state?.waiting;
    return w ? [`${c.name}: ${w.reason ?? "waiting"}${w.message ? `: ${w.message}` : ""}`] : [];
  });
  return { since, why: waiting.join("; ") || p.status?.phase || "no status" };
}

export interface AgentPods {
  /** The Migration's EdgeNode's agent pods on `node`. */
  pods: V1Pod[];
  node: string;
  /** namespace/name of the agent DaemonSet, for the message. */
  daemonSet: string;
  now: number;
  graceMs?: number;
}

/** Why no agent will serve the source node, or undefined while one may. */
export function agentUnavailable(a: AgentPods): string | undefined {
  const grace = a.graceMs ?? AGENT_GRACE_MS;
  if (a.pods.length === 0) return `no edge agent pod of DaemonSet ${a.daemonSet} runs on ${a.node}`;
  let first: string | undefined;
  for (const p of a.pods) {
    const n = notReady(p);
    if (!n) return undefined;
    if (Number.isNaN(n.since) || a.now - n.since < grace) return undefined;
    first ??= `the edge agent pod ${p.metadata?.namespace}/${p.metadata?.name} on ${a.node} is not Ready: ${n.why}`;
  }
  return first;
}
