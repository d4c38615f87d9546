// A test's hold on the operator, enforced by the real API server: a
// ValidatingAdmissionPolicy (and its binding) that refuses, in one namespace,
// every change the operator makes to a restored pod ("reveal": cutover stops
// right before the owner may adopt it) or every deletion of any other pod
// ("removal": cutover stops after the reveal, before the original goes), and
// the API server's own count of what it refused under it.
import { stringify } from "yaml";
import { MIGRATION_POD_LABEL } from "../../migration/restore/pod.ts";

export type Hold = "reveal" | "removal";

/** The policy and its binding as one YAML document stream, for `kubectl apply -f -`. */
export function holdPolicyYaml(o: {
  name: string;
  namespace: string;
  operatorUser: string;
  what: Hold;
}): string {
  const restoredPod = `'${MIGRATION_POD_LABEL}' in oldObject.metadata.?labels.orValue({})`;
  const reveal = o.what === "reveal";
  const policy = {
    apiVersion: "admissionregistration.k8s.io/v1",
    kind: "ValidatingAdmissionPolicy",
    metadata: { name: o.name },
    spec: {
      failurePolicy: "Fail",
      matchConstraints: {
        resourceRules: [
          {
            apiGroups: [""],
            apiVersions: ["v1"],
            operations: reveal ? ["UPDATE"] : ["DELETE"],
            resources: ["pods"],
          },
        ],
      },
      matchConditions: [
        { name: "the-operator", expression: `request.userInfo.username == '${o.operatorUser}'` },
      ],
      validations: [
        {
          expression: reveal ? `!(${restoredPod})` : restoredPod,
          message: `held by the test: the operator may not ${reveal ? "change a restored pod" : "delete another pod"} now`,
        },
      ],
    },
  };
  const binding = {
    apiVersion: "admissionregistration.k8s.io/v1",
    kind: "ValidatingAdmissionPolicyBinding",
    metadata: { name: o.name },
    spec: {
      policyName: o.name,
      validationActions: ["Deny"],
      matchResources: {
        namespaceSelector: { matchLabels: { "kubernetes.io/metadata.name": o.namespace } },
      },
    },
  };
  return `${stringify(policy)}---\n${stringify(binding)}`;
}

/** How many requests the API server has denied under policy `name`, from its /metrics text. */
export function refusedUnder(metrics: string, name: string): number {
  let n = 0;
  for (const line of metrics.split("\n")) {
    if (!line.startsWith("apiserver_validating_admission_policy_check_total{")) continue;
    if (!line.includes(`policy="${name}"`) || !line.includes('enforcement_action="deny"')) continue;
    n += Number(line.split(" ").at(-1));
  }
  return n;
}
