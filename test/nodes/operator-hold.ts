// The operator held by the real API server in the app namespace (a
// ValidatingAdmissionPolicy, see test/support/hold-policy.ts): "reveal" refuses
// every change it makes to a restored pod, so cutover stops right before the
// owner may adopt it; "removal" refuses every deletion of any other pod, so
// cutover stops after the reveal, before the original goes. A hold is in
// force once a server-side dry run as the operator is refused.
import { waitUntil } from "../cluster/process.ts";
import { type Hold, holdPolicyYaml, refusedUnder } from "../support/hold-policy.ts";
import { apply, cluster, kubectl } from "./support.ts";

const OPERATOR_USER = "system:serviceaccount:edgeshift-system:edgeshift-operator";
const MIGRATION_LABEL = "edgeshift.dev/migration";

export interface OperatorHold {
  /** Returns once the API server enforces it. */
  hold(what: Hold): Promise<void>;
  /** Lifted (and seen lifted); nothing when none is in force. */
  release(): Promise<void>;
  /** What the API server has refused under the policy so far (its own metric). */
  refusals(): Promise<number>;
}

/** `id` names the probe pods (labelled test=<id> for the test's cleanup), `name` the policy. */
export function operatorHold(id: string, name: string): OperatorHold {
  const ns = () => cluster().appNamespace;
  // Pods that never run (no node matches), like a restored pod and like an original: what the dry runs touch.
  const probes = { reveal: `${id}-probe-restored`, removal: `${id}-probe-original` };
  const probePod = (pod: string, restored: boolean) => ({
    apiVersion: "v1",
    kind: "Pod",
    metadata: {
      name: pod,
      namespace: ns(),
      labels: { test: id, ...(restored ? { [MIGRATION_LABEL]: "probe" } : {}) },
    },
    spec: {
      nodeSelector: { "edgeshift.dev/no-such-node": "true" },
      containers: [{ name: "c", image: "busybox:1.37" }],
    },
  });
  /** Whether the operator could do now what the hold refuses (a server-side dry run as it). */
  const operatorMay = (what: Hold) => {
    const act =
      what === "reveal"
        ? ["label", "pod", probes.reveal, "edgeshift.dev/dry-run=x"]
        : ["delete", "pod", probes.removal];
    return kubectl(["-n", ns(), "--as", OPERATOR_USER, ...act, "--dry-run=server"]).then(
      () => true,
      () => false,
    );
  };
  let holding: Hold | undefined;
  return {
    async hold(what) {
      await apply(probePod(probes.reveal, true), probePod(probes.removal, false));
      await kubectl(
        ["apply", "-f", "-"],
        holdPolicyYaml({ name, namespace: ns(), operatorUser: OPERATOR_USER, what }),
      );
      holding = what;
      await waitUntil(
        "the hold policy in force",
        async () => ((await operatorMay(what)) ? undefined : true),
        { timeoutMs: 30_000, intervalMs: 250 },
      );
    },
    async release() {
      await kubectl([
        "delete",
        "validatingadmissionpolicybinding,validatingadmissionpolicy",
        name,
        "--ignore-not-found",
      ]).catch(() => "");
      const was = holding;
      holding = undefined;
      if (was) {
        await waitUntil(
          "the hold policy lifted",
          async () => ((await operatorMay(was)) ? true : undefined),
          { timeoutMs: 30_000, intervalMs: 250 },
        );
      }
    },
    async refusals() {
      return refusedUnder(await kubectl(["get", "--raw", "/metrics"]), name);
    },
  };
}
