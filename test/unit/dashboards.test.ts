// The Grafana dashboard and the Prometheus alerts query metrics the code
// really exports: every name, suffix, label and label value in their PromQL is
// checked against the metric definitions in operator/, migration/ and sidecar/
// (and prom-client's default metrics under the prefix the code gives them).
import { readdirSync, readFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { collectDefaultMetrics, Registry } from "prom-client";
import { describe, expect, it } from "vitest";
import { parse } from "yaml";

const root = resolve(import.meta.dirname, "../..");

type MetricType = "counter" | "gauge" | "histogram" | "summary";
interface MetricDef {
  type: MetricType;
  labels: string[];
  file: string;
}

const sourceFiles = ["operator", "migration", "sidecar"].flatMap((dir) =>
  readdirSync(join(root, dir), { recursive: true })
    .map(String)
    .filter((f) => f.endsWith(".ts") && !f.endsWith(".test.ts"))
    .map((f) => join(dir, f)),
);
const sources = new Map(sourceFiles.map((f) => [f, readFileSync(join(root, f), "utf8")]));
/** A file's text plus the files it imports: where a metric's label values are spelled out. */
function nearSource(file: string): string {
  const text = sources.get(file) ?? "";
  const imported = [...text.matchAll(/from "(\.[^"]+\.ts)"/g)].map((m) =>
    join(dirname(file), m[1] ?? ""),
  );
  return [text, ...imported.map((f) => sources.get(f) ?? "")].join("\n");
}

/** Labels Prometheus adds to every scraped series (Kubernetes service discovery). */
const TARGET_LABELS = ["job", "instance", "namespace", "pod", "service", "container", "endpoint"];

function definedMetrics(): Map<string, MetricDef> {
  const defs = new Map<string, MetricDef>();
  for (const [file, text] of sources) {
    for (const m of text.matchAll(
      /new (Counter|Gauge|Histogram|Summary)(?:<[^>]*>)?\(\{([^}]*)\}\)/g,
    )) {
      const body = m[2] ?? "";
      const name = /name:\s*"([^"]+)"/.exec(body)?.[1];
      if (!name) continue;
      const labels = [
        ...(/labelNames:\s*\[([^\]]*)\]/.exec(body)?.[1] ?? "").matchAll(/"([^"]+)"/g),
      ].map((x) => x[1] ?? "");
      defs.set(name, { type: (m[1] ?? "").toLowerCase() as MetricType, labels, file });
    }
    // collectDefaultMetrics({ ..., prefix: "edgeshift_process_" }): what prom-client really registers.
    for (const m of text.matchAll(/collectDefaultMetrics\(\{[^}]*prefix:\s*"([^"]+)"/g)) {
      const registry = new Registry();
      collectDefaultMetrics({ register: registry, prefix: m[1] ?? "" });
      for (const metric of registry.getMetricsAsArray()) {
        const { name, type } = metric as unknown as { name: string; type: MetricType };
        const labels = (metric as unknown as { labelNames?: string[] }).labelNames ?? [];
        defs.set(name, { type, labels, file });
      }
    }
  }
  return defs;
}

const defs = definedMetrics();

interface Query {
  where: string;
  expr: string;
  legend?: string;
}

function dashboardQueries(): Query[] {
  const dash = JSON.parse(
    readFileSync(join(root, "manifests/grafana/edgeshift-dashboard.json"), "utf8"),
  ) as { panels: Panel[] };
  const out: Query[] = [];
  const walk = (panels: Panel[]) => {
    for (const p of panels) {
      for (const t of p.targets ?? []) {
        out.push({ where: `panel "${p.title}" ${t.refId}`, expr: t.expr, legend: t.legendFormat });
      }
      walk(p.panels ?? []);
    }
  };
  walk(dash.panels);
  return out;
}

interface Panel {
  id: number;
  type: string;
  title: string;
  datasource?: { type: string; uid: string };
  gridPos: { x: number; y: number; w: number; h: number };
  targets?: { refId: string; expr: string; legendFormat?: string; datasource?: { uid: string } }[];
  panels?: Panel[];
}

interface Rule {
  alert: string;
  expr: string;
  for?: string;
  labels: Record<string, string>;
  annotations: Record<string, string>;
}
const rulesDoc = parse(readFileSync(join(root, "manifests/prometheus/rules.yaml"), "utf8")) as {
  apiVersion: string;
  kind: string;
  spec: { groups: { name: string; rules: Rule[] }[] };
};
const rules = rulesDoc.spec.groups.flatMap((g) => g.rules);
const ruleQueries: Query[] = rules.map((r) => ({ where: `alert ${r.alert}`, expr: r.expr }));

/** Names of the functions enclosing position `at`, innermost first. */
function enclosing(expr: string, at: number): string[] {
  const out: string[] = [];
  let depth = 0;
  for (let i = at - 1; i >= 0; i--) {
    const ch = expr[i];
    if (ch === ")") depth++;
    else if (ch === "(") {
      if (depth === 0) out.push(/([a-z_]*)\s*$/.exec(expr.slice(0, i))?.[1] ?? "");
      else depth--;
    }
  }
  return out.filter(Boolean);
}

/** The definition behind a series name, histogram and summary suffixes resolved. */
function resolveSeries(name: string): { def?: MetricDef; base: string; suffix: string } {
  const direct = defs.get(name);
  if (direct) return { def: direct, base: name, suffix: "" };
  const m = /^(.*)_(bucket|sum|count)$/.exec(name);
  const base = m?.[1] ?? name;
  return { def: defs.get(base), base, suffix: m?.[2] ?? "" };
}

/** Every problem with one PromQL expression, as readable strings. */
function problems(q: Query): string[] {
  const out: string[] = [];
  const found = [...q.expr.matchAll(/\b(edgeshift_[a-z0-9_]+)\b(\{[^}]*\})?/g)];
  if (found.length === 0) out.push(`${q.where}: queries no edgeshift metric`);
  const available = new Set(TARGET_LABELS);
  for (const m of found) {
    const name = m[1] ?? "";
    const at = m.index ?? 0;
    const { def, suffix } = resolveSeries(name);
    if (!def) {
      out.push(`${q.where}: ${name} is not defined in operator/, migration/ or sidecar/`);
      continue;
    }
    if (suffix === "bucket" && def.type !== "histogram")
      out.push(`${q.where}: ${name}: only histograms have _bucket`);
    else if (suffix && def.type !== "histogram" && def.type !== "summary")
      out.push(`${q.where}: ${name}: a ${def.type} has no _${suffix} series`);
    if (!suffix && (def.type === "histogram" || def.type === "summary"))
      out.push(`${q.where}: ${name} is a ${def.type}: query _bucket, _sum or _count`);
    const labels = new Set([
      ...def.labels,
      ...TARGET_LABELS,
      ...(suffix === "bucket" ? ["le"] : []),
    ]);
    for (const l of labels) available.add(l);
    const inner = enclosing(q.expr, at)[0] ?? "";
    const counterLike = def.type !== "gauge";
    if (counterLike && !["rate", "increase", "irate"].includes(inner))
      out.push(
        `${q.where}: counter ${name} must be inside rate() or increase(), is in ${inner || "nothing"}()`,
      );
    if (!counterLike && ["rate", "increase", "irate"].includes(inner))
      out.push(`${q.where}: gauge ${name} inside ${inner}()`);
    for (const sel of (m[2] ?? "").matchAll(/([a-zA-Z_]+)\s*(=~|!~|!=|=)\s*"([^"]*)"/g)) {
      const [, label = "", op, value = ""] = sel;
      if (!labels.has(label)) out.push(`${q.where}: ${name} has no label "${label}"`);
      else if (
        op === "=" &&
        def.labels.includes(label) &&
        !nearSource(def.file).includes(`"${value}"`)
      )
        out.push(
          `${q.where}: ${name}{${label}="${value}"}: "${value}" is not a value its code sets`,
        );
    }
  }
  const byLabels = [...q.expr.matchAll(/\bby\s*\(([^)]*)\)/g)].flatMap((b) =>
    (b[1] ?? "").split(",").map((s) => s.trim()),
  );
  for (const l of byLabels.filter(Boolean)) {
    if (!available.has(l)) out.push(`${q.where}: groups by "${l}", which its metrics do not have`);
  }
  // A legend names labels the result keeps: those grouped by, or all of them without aggregation.
  const aggregated = /\b(sum|max|min|avg|count)\b\s*(by\s*\([^)]*\)\s*)?\(/.test(q.expr);
  const kept = aggregated ? new Set(byLabels) : available;
  for (const l of (q.legend ?? "").matchAll(/\{\{\s*([a-zA-Z_]+)\s*\}\}/g)) {
    if (!kept.has(l[1] ?? ""))
      out.push(`${q.where}: legend uses {{${l[1]}}}, which the query drops`);
  }
  return out;
}

const dashboard = dashboardQueries();
const referenced = (queries: Query[]) =>
  new Set(
    queries.flatMap((q) =>
      [...q.expr.matchAll(/\b(edgeshift_[a-z0-9_]+)\b/g)].map(
        (m) => resolveSeries(m[1] ?? "").base,
      ),
    ),
  );

describe("metric definitions found in the source", () => {
  it("include the operator's, the agent's and the default process metrics", () => {
    for (const name of [
      "edgeshift_migrations_total",
      "edgeshift_migration_step_duration_seconds",
      "edgeshift_reconcile_duration_seconds",
      "edgeshift_agent_bytes_total",
      "edgeshift_process_process_resident_memory_bytes",
    ]) {
      expect(defs.has(name), name).toBe(true);
    }
    expect(defs.get("edgeshift_reconcile_duration_seconds")).toMatchObject({
      type: "histogram",
      labels: ["queue", "result"],
    });
  });

  it("make the checker refuse what is wrong (so passing means something)", () => {
    const bad = (expr: string, legend?: string) => problems({ where: "t", expr, legend });
    expect(bad("sum(rate(edgeshift_migration_total[5m]))")).toHaveLength(1);
    expect(bad("sum(edgeshift_migrations_total)")).toHaveLength(1);
    expect(bad("histogram_quantile(0.9, rate(edgeshift_checkpoint_size_bytes[5m]))")).toHaveLength(
      1,
    );
    expect(bad('sum(rate(edgeshift_migrations_total{result="succeded"}[5m]))')).toHaveLength(1);
    expect(bad('sum(rate(edgeshift_migrations_total{outcome="failed"}[5m]))')).toHaveLength(1);
    expect(bad("sum by (step) (rate(edgeshift_migrations_total[5m]))")).toHaveLength(1);
    expect(
      bad("sum by (result) (rate(edgeshift_migrations_total[5m]))", "{{policy}}"),
    ).toHaveLength(1);
    expect(bad("rate(edgeshift_pod_watchers[5m])")).toHaveLength(1);
    expect(bad("rate(edgeshift_leader_bucket[5m])")).toHaveLength(2);
    expect(
      bad(
        'sum by (result) (increase(edgeshift_migrations_total{result="failed"}[5m]))',
        "{{result}}",
      ),
    ).toEqual([]);
  });
});

describe("Grafana dashboard", () => {
  const dash = JSON.parse(
    readFileSync(join(root, "manifests/grafana/edgeshift-dashboard.json"), "utf8"),
  ) as {
    uid: string;
    title: string;
    panels: Panel[];
    templating: { list: { name: string; type: string; query: string }[] };
  };
  const all: Panel[] = [];
  const flat = (ps: Panel[]) => {
    for (const p of ps) {
      all.push(p);
      flat(p.panels ?? []);
    }
  };
  flat(dash.panels);

  it("queries only metrics, suffixes, labels and values the code exports", () => {
    expect(dashboard.length).toBeGreaterThan(20);
    expect(dashboard.flatMap(problems)).toEqual([]);
  });

  it("has a panel for every metric the code defines", () => {
    const onDashboard = referenced(dashboard);
    const own = [...defs.keys()].filter(
      (n) => !n.startsWith("edgeshift_process_") && !n.startsWith("edgeshift_agent_process_"),
    );
    expect(own.filter((n) => !onDashboard.has(n))).toEqual([]);
  });

  it("is importable: a datasource variable, unique panel ids, panels inside the 24-column grid", () => {
    expect(dash.uid).toMatch(/^[a-z0-9-]{1,40}$/);
    expect(dash.templating.list).toContainEqual(
      expect.objectContaining({ name: "datasource", type: "datasource", query: "prometheus" }),
    );
    const ids = all.map((p) => p.id);
    expect(new Set(ids).size).toBe(ids.length);
    for (const p of all) {
      expect(p.gridPos.x + p.gridPos.w, p.title).toBeLessThanOrEqual(24);
      if (p.type === "row") continue;
      // biome-ignore lint/suspicious/noTemplateCurlyInString: Grafana's variable syntax
      expect(p.datasource?.uid, p.title).toBe("${datasource}");
      expect(p.targets?.length, p.title).toBeGreaterThan(0);
      const refs = (p.targets ?? []).map((t) => t.refId);
      expect(new Set(refs).size, p.title).toBe(refs.length);
    }
  });
});

describe("Prometheus alerts", () => {
  it("query only metrics, suffixes, labels and values the code exports", () => {
    expect(ruleQueries.flatMap(problems)).toEqual([]);
  });

  it("cover failing migrations, stale monitors, informer restarts and a missing leader", () => {
    expect(rulesDoc).toMatchObject({
      apiVersion: "monitoring.coreos.com/v1",
      kind: "PrometheusRule",
    });
    const byMetric = (metric: string, selector = "") =>
      rules.filter((r) => r.expr.includes(metric) && r.expr.includes(selector)).map((r) => r.alert);
    expect(byMetric("edgeshift_migrations_total", 'result="failed"').length).toBeGreaterThan(0);
    expect(byMetric("edgeshift_samples_dropped_total", 'reason="stale"').length).toBeGreaterThan(0);
    expect(byMetric("edgeshift_informer_restarts_total").length).toBeGreaterThan(0);
    expect(byMetric("absent(edgeshift_leader)").length).toBeGreaterThan(0);
  });

  it("are well-formed: unique names, a severity, a summary and labels the query keeps", () => {
    const names = rules.map((r) => r.alert);
    expect(new Set(names).size).toBe(names.length);
    for (const r of rules) {
      expect(r.alert).toMatch(/^Edgeshift[A-Z][A-Za-z]+$/);
      expect(["warning", "critical"]).toContain(r.labels.severity);
      expect(r.annotations.summary, r.alert).toBeTruthy();
      expect(r.annotations.description, r.alert).toBeTruthy();
      if (r.for) expect(r.for).toMatch(/^\d+[smh]$/);
      const by = new Set(
        [...r.expr.matchAll(/\bby\s*\(([^)]*)\)/g)].flatMap((b) =>
          (b[1] ?? "").split(",").map((s) => s.trim()),
        ),
      );
      const text = `${r.annotations.summary} ${r.annotations.description}`;
      for (const l of text.matchAll(/\$labels\.([a-zA-Z_]+)/g)) {
        expect(by.has(l[1] ?? ""), `${r.alert} uses $labels.${l[1]}`).toBe(true);
      }
    }
  });
});
