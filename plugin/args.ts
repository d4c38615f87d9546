// Command line of kubectl-edgeshift: one parse for every command, then a check
// that each command got only its own flags and the positionals it takes.
import { parseArgs } from "node:util";
import type { RestorePolicy } from "../operator/api/v1alpha1.ts";
import { parseDuration } from "../operator/config.ts";

export const USAGE = `kubectl edgeshift: watch and drive edgeshift migrations

Usage:
  kubectl edgeshift status [--recent N]
      EdgeNodes with their nodes, runtime support and monitored pods, and the
      most recent migrations.
  kubectl edgeshift list [-n NAMESPACE | -A]
      Migrations in a namespace, or in all of them.
  kubectl edgeshift describe MIGRATION [-n NAMESPACE]
      One migration: its steps with durations, conditions and events.
  kubectl edgeshift migrate POD [-n NAMESPACE] [--to NODE] [--policy checkpoint|restart]
                               [--back] [--no-follow] [--timeout DURATION]
      Migrates a pod off its edge node now (--back: a pod edgeshift moved to the
      cloud, back to an edge node of its EdgeNode) and follows the migration to
      its end. Exits 0 when it succeeds, 1 when it fails.

Flags for every command:
  --kubeconfig PATH   kubeconfig to use (default: $KUBECONFIG, then ~/.kube/config)
  --context NAME      kubeconfig context to use
  -n, --namespace NS  namespace (default: the context's, else "default")
  -h, --help          this help

Exit codes: 0 success, 1 failed migration or API error, 2 bad usage,
124 --timeout reached while following, 130 interrupted.`;

export class UsageError extends Error {}

export type Command =
  | { name: "help" }
  | { name: "status"; recent: number }
  | { name: "list"; allNamespaces: boolean }
  | { name: "describe"; migration: string }
  | {
      name: "migrate";
      pod: string;
      to?: string;
      policy?: RestorePolicy;
      /** Direction ToEdge. */
      back?: boolean;
      follow: boolean;
      timeoutMs: number;
    };

export interface Invocation {
  command: Command;
  kubeconfig?: string;
  context?: string;
  namespace?: string;
}

const OPTIONS = {
  kubeconfig: { type: "string" },
  context: { type: "string" },
  namespace: { type: "string", short: "n" },
  "all-namespaces": { type: "boolean", short: "A" },
  help: { type: "boolean", short: "h" },
  recent: { type: "string" },
  to: { type: "string" },
  policy: { type: "string" },
  "no-follow": { type: "boolean" },
  back: { type: "boolean" },
  timeout: { type: "string" },
} as const;

type OptionName = keyof typeof OPTIONS;
const GLOBAL: OptionName[] = ["kubeconfig", "context", "namespace", "help"];
const OWN: Record<Exclude<Command["name"], "help">, OptionName[]> = {
  status: ["recent"],
  list: ["all-namespaces"],
  describe: [],
  migrate: ["to", "policy", "back", "no-follow", "timeout"],
};
const DNS_NAME = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

/** Parses argv (without node and the script); throws UsageError with a one-line reason. */
export function parseCommandLine(argv: string[]): Invocation {
  let parsed: ReturnType<typeof parseArgs<{ options: typeof OPTIONS; allowPositionals: true }>>;
  try {
    parsed = parseArgs({ args: argv, options: OPTIONS, allowPositionals: true, strict: true });
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  const { values: v, positionals } = parsed;
  const base = { kubeconfig: v.kubeconfig, context: v.context, namespace: v.namespace };
  const [name, ...rest] = positionals;
  if (v.help || name === undefined || name === "help")
    return { ...base, command: { name: "help" } };
  if (!(name in OWN)) throw new UsageError(`unknown command "${name}"`);
  const cmd = name as keyof typeof OWN;
  const allowed = new Set<string>([...GLOBAL, ...OWN[cmd]]);
  for (const k of Object.keys(v)) {
    if (!allowed.has(k)) throw new UsageError(`${cmd} does not take --${k}`);
  }
  const takes = cmd === "describe" || cmd === "migrate" ? 1 : 0;
  if (rest.length > takes) throw new UsageError(`${cmd}: unexpected argument "${rest[takes]}"`);
  if (rest.length < takes)
    throw new UsageError(`${cmd} needs the name of a ${cmd === "migrate" ? "pod" : "migration"}`);
  if (v.namespace !== undefined && !DNS_NAME.test(v.namespace))
    throw new UsageError(`invalid namespace "${v.namespace}"`);
  if (v.namespace !== undefined && v["all-namespaces"])
    throw new UsageError("use either --namespace or --all-namespaces");
  const target = rest[0] ?? "";
  if (takes && !DNS_NAME.test(target))
    throw new UsageError(
      `"${target}" is not a valid ${cmd === "migrate" ? "pod" : "migration"} name`,
    );

  switch (cmd) {
    case "status": {
      const recent = v.recent === undefined ? 10 : Number(v.recent);
      if (!Number.isInteger(recent) || recent < 0 || recent > 1000)
        throw new UsageError(`--recent must be an integer from 0 to 1000, got "${v.recent}"`);
      return { ...base, command: { name: "status", recent } };
    }
    case "list":
      return { ...base, command: { name: "list", allNamespaces: v["all-namespaces"] === true } };
    case "describe":
      return { ...base, command: { name: "describe", migration: target } };
    case "migrate": {
      if (v.policy !== undefined && v.policy !== "checkpoint" && v.policy !== "restart")
        throw new UsageError(`--policy must be checkpoint or restart, got "${v.policy}"`);
      if (v.to !== undefined && !DNS_NAME.test(v.to))
        throw new UsageError(`--to: "${v.to}" is not a valid node name`);
      const timeoutMs = parseDuration(v.timeout ?? "10m");
      if (timeoutMs === undefined || timeoutMs <= 0)
        throw new UsageError(
          `--timeout must be a duration like "90s" or "10m", got "${v.timeout}"`,
        );
      return {
        ...base,
        command: {
          name: "migrate",
          pod: target,
          to: v.to,
          policy: v.policy as RestorePolicy | undefined,
          ...(v.back ? { back: true } : {}),
          follow: v["no-follow"] !== true,
          timeoutMs,
        },
      };
    }
  }
}
