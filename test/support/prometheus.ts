// What the Prometheus tests share: Debian's prometheus and promtool from the
// cache (test/cluster/install-prometheus.sh put them there before the tests,
// with kubernetes-sd, Prometheus' own Kubernetes discovery of the same release),
// the alert rules of manifests/prometheus/rules.yaml as a plain rule file, the
// dashboard's queries with Grafana's variables filled in, and the part of an
// alert that compares with a threshold, found with Prometheus' own PromQL
// grammar.
import { execFile } from "node:child_process";
import { readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { promisify } from "node:util";
import { parser } from "@prometheus-io/lezer-promql";
import { parse, stringify } from "yaml";

const run = promisify(execFile);
export const repoRoot = resolve(import.meta.dirname, "../..");

export interface PrometheusBinaries {
  prometheus: string;
  promtool: string;
  /** Prometheus' Kubernetes discovery as HTTP SD (Debian's server has none built in). */
  kubernetesSd: string;
}

/** The cached binaries; fails (naming the script) when they were not installed first. */
export async function prometheusBinaries(): Promise<PrometheusBinaries> {
  const { stdout } = await run("bash", [
    join(repoRoot, "test/cluster/install-prometheus.sh"),
    "--installed",
  ]);
  const dir = stdout.trim().split("\n").at(-1) ?? "";
  return {
    prometheus: join(dir, "prometheus"),
    promtool: join(dir, "promtool"),
    kubernetesSd: join(dir, "kubernetes-sd"),
  };
}

export interface AlertRule {
  alert: string;
  expr: string;
  for?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}
export interface RuleGroup {
  name: string;
  interval?: string;
  rules: AlertRule[];
}

/** spec.groups of the PrometheusRule: what a Prometheus Operator hands its Prometheus. */
export function ruleGroups(): RuleGroup[] {
  const doc = parse(readFileSync(join(repoRoot, "manifests/prometheus/rules.yaml"), "utf8")) as {
    kind: string;
    spec: { groups: RuleGroup[] };
  };
  if (doc.kind !== "PrometheusRule") throw new Error(`rules.yaml is a ${doc.kind}`);
  return doc.spec.groups;
}

/** The rule file a plain Prometheus (or promtool) reads: `groups:` at the top. */
export function ruleFileYaml(groups: RuleGroup[] = ruleGroups()): string {
  return stringify({ groups });
}

export function alertRules(groups: RuleGroup[] = ruleGroups()): AlertRule[] {
  return groups.flatMap((g) => g.rules);
}

interface Panel {
  title: string;
  targets?: { refId: string; expr: string }[];
  panels?: Panel[];
}

export interface DashboardQuery {
  where: string;
  expr: string;
}

/** Every query of every panel (rows' panels included) of the Grafana dashboard. */
export function dashboardQueries(): DashboardQuery[] {
  const dash = JSON.parse(
    readFileSync(join(repoRoot, "manifests/grafana/edgeshift-dashboard.json"), "utf8"),
  ) as { panels: Panel[] };
  const out: DashboardQuery[] = [];
  const walk = (panels: Panel[]) => {
    for (const p of panels) {
      for (const t of p.targets ?? [])
        out.push({ where: `panel "${p.title}" ${t.refId}`, expr: t.expr });
      walk(p.panels ?? []);
    }
  };
  walk(dash.panels);
  return out;
}

/**
 * The query with Grafana's variables replaced as Grafana would for one view
 * ($__range, $__interval, $__rate_interval); any other variable is an error, so
 * a dashboard variable added later must be given a value here.
 */
export function grafanaExpand(expr: string, vars: Record<string, string>): string {
  const out = expr.replace(/\$\{?(__[a-z_]+|[A-Za-z_][A-Za-z0-9_]*)\}?/g, (whole, name: string) => {
    const v = vars[name];
    if (v === undefined) throw new Error(`no value for the dashboard variable ${whole} in ${expr}`);
    return v;
  });
  return out;
}

type SyntaxNode = ReturnType<typeof parser.parse>["topNode"];

const COMPARISONS = new Set(["Gtr", "Lss", "Gte", "Lte", "Eql", "Neq"]);
const SET_OPERATORS = new Set(["And", "Or", "Unless"]);
const isNumber = (n: SyntaxNode) => n.name === "NumberDurationLiteral";

/**
 * The parts of an alert's expression that must return series for the alert to
 * mean anything: each side of `and`/`or`/`unless`, with a comparison against a
 * number dropped (the threshold), and `absent(x)` read as `x` (absent is empty
 * exactly when `x` has data). For `a / b > 0.5 and c >= 3` that is `a / b` and
 * `c`; for `(max(l) < 1) or absent(l)`, `max(l)` and `l`.
 */
export function thresholdOperands(expr: string): string[] {
  const tree = parser.parse(expr);
  const errors: string[] = [];
  tree.iterate({
    enter: (n) => {
      if (n.type.isError) errors.push(`at ${n.from}`);
    },
  });
  if (errors.length > 0) throw new Error(`not PromQL (${errors.join(", ")}): ${expr}`);
  const text = (n: SyntaxNode) => expr.slice(n.from, n.to).trim();
  const operands = (n: SyntaxNode): string[] => {
    if (n.name === "PromQL") {
      const child = n.firstChild;
      return child ? operands(child) : [];
    }
    if (n.name === "ParenExpr") {
      const inner = n.firstChild;
      return inner ? operands(inner) : [];
    }
    if (n.name === "FunctionCall" && n.getChild("FunctionIdentifier")?.getChild("Absent")) {
      const arg = n.getChild("FunctionCallBody")?.firstChild;
      return arg ? operands(arg) : [];
    }
    if (n.name === "BinaryExpr") {
      const kids: SyntaxNode[] = [];
      for (let c = n.firstChild; c; c = c.nextSibling) kids.push(c);
      const op = kids.find((k) => SET_OPERATORS.has(k.name) || COMPARISONS.has(k.name));
      const left = kids[0];
      const right = kids.at(-1);
      if (op && left && right) {
        if (SET_OPERATORS.has(op.name)) return [...operands(left), ...operands(right)];
        if (isNumber(right) && !isNumber(left)) return operands(left);
        if (isNumber(left) && !isNumber(right)) return operands(right);
      }
    }
    return [text(n)];
  };
  return operands(tree.topNode);
}
