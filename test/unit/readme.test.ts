// Keeps the README's user reference in step with the code: every spec field of
// the CRDs (type, default, bounds, allowed values), every condition reason the
// operator and the agent can set, every event reason, every metric. A field, a
// reason or a metric added without documentation fails here, and so does a
// documented one that no longer exists.
import { readdirSync, readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { parse } from "yaml";
import { EdgeNodeConditionReason, MigrationConditionReason } from "../../operator/api/v1alpha1.ts";
import { DROP_REASONS } from "../../sidecar/protocol.ts";

const root = new URL("../../", import.meta.url);
const read = (path: string) => readFileSync(new URL(path, root), "utf8");
const README = read("README.md");

interface Schema {
  type?: string;
  format?: string;
  default?: unknown;
  required?: string[];
  properties?: Record<string, Schema>;
  items?: Schema;
  additionalProperties?: Schema | boolean;
  enum?: unknown[];
  minimum?: number;
  maximum?: number;
  minLength?: number;
  maxLength?: number;
  minItems?: number;
  maxItems?: number;
  maxProperties?: number;
}

interface Crd {
  spec: {
    names: { kind: string };
    versions: { schema: { openAPIV3Schema: Schema } }[];
  };
}

interface Field {
  path: string;
  type: string;
  default: string;
  bounds: string[];
}

// --- what the CRDs say, in the README's notation ---------------------------------

const BOUND_KEYWORDS = [
  "minimum",
  "maximum",
  "minLength",
  "maxLength",
  "minItems",
  "maxItems",
  "maxProperties",
] as const;

const mapValues = (s: Schema) =>
  typeof s.additionalProperties === "object" ? s.additionalProperties : undefined;

function typeText(s: Schema): string {
  if (s.type === "array" && s.items) return `[]${typeText(s.items)}`;
  const values = mapValues(s);
  if (s.type === "object" && values) return `map[string]${typeText(values)}`;
  return s.format ? `${s.type} (${s.format})` : (s.type ?? "");
}

/** Each bound as `keyword: value`; enums as "one of `a`, `b`"; list items and map values prefixed. */
function boundTokens(s: Schema): string[] {
  const out: string[] = [];
  for (const k of BOUND_KEYWORDS) if (s[k] !== undefined) out.push(`${k}: ${s[k]}`);
  if (s.enum) out.push(`one of ${s.enum.map((v) => `\`${String(v)}\``).join(", ")}`);
  if (s.type === "array" && s.items && s.items.type !== "object")
    for (const t of boundTokens(s.items)) out.push(`item ${t}`);
  const values = mapValues(s);
  if (values) for (const t of boundTokens(values)) out.push(`value ${t}`);
  return out;
}

function defaultText(s: Schema, required: boolean): string {
  if (s.default === undefined) return required ? "required" : "—";
  const v = s.default;
  const text =
    typeof v === "object" && v !== null
      ? `{${Object.entries(v)
          .map(([k, x]) => `${k}: ${String(x)}`)
          .join(", ")}}`
      : String(v);
  return `\`${text}\``;
}

function specFields(s: Schema, path: string, required: boolean, out: Field[]): Field[] {
  out.push({
    path,
    type: typeText(s),
    default: defaultText(s, required),
    bounds: boundTokens(s),
  });
  const obj = s.type === "array" ? s.items : s;
  const prefix = s.type === "array" ? `${path}[]` : path;
  for (const [name, child] of Object.entries(obj?.properties ?? {}))
    specFields(child, `${prefix}.${name}`, obj?.required?.includes(name) ?? false, out);
  return out;
}

function crdFields(crd: Crd): Field[] {
  const spec = crd.spec.versions[0]?.schema.openAPIV3Schema.properties?.spec;
  if (!spec?.properties) throw new Error(`${crd.spec.names.kind}: no spec properties`);
  const out: Field[] = [];
  for (const [name, child] of Object.entries(spec.properties))
    specFields(child, `spec.${name}`, spec.required?.includes(name) ?? false, out);
  return out;
}

const CRDS: Crd[] = readdirSync(new URL("crds/", root))
  .filter((f) => f.endsWith(".yaml"))
  .sort()
  .map((f) => parse(read(`crds/${f}`)) as Crd);

// --- what the README says --------------------------------------------------------

/** The text under a `## title` heading, up to the next `## ` heading. */
function section(md: string, title: string): string {
  const lines = md.split("\n");
  const start = lines.indexOf(`## ${title}`);
  if (start < 0) return "";
  const end = lines.findIndex((l, i) => i > start && l.startsWith("## "));
  return lines.slice(start + 1, end < 0 ? undefined : end).join("\n");
}

/** The text under the `### kind` heading of a section, up to the next `### `. */
function subsection(text: string, kind: string): string {
  const lines = text.split("\n");
  const start = lines.indexOf(`### ${kind}`);
  if (start < 0) return "";
  const end = lines.findIndex((l, i) => i > start && l.startsWith("### "));
  return lines.slice(start + 1, end < 0 ? undefined : end).join("\n");
}

/** Reference table rows by field path: [type, default, bounds, notes]. */
function referenceRows(text: string): Map<string, string[]> {
  const rows = new Map<string, string[]>();
  for (const line of text.split("\n")) {
    const m = /^\| `(spec\.[^`]+)` \|(.*)\|$/.exec(line);
    if (!m?.[1]) continue;
    rows.set(
      m[1],
      (m[2] ?? "").split("|").map((c) => c.trim()),
    );
  }
  return rows;
}

/** Everything wrong with the README's CRD reference; empty when it matches the CRDs. */
function referenceProblems(md: string, crds: Crd[]): string[] {
  const problems: string[] = [];
  const reference = section(md, "CRD reference");
  if (!reference) return ["no '## CRD reference' section"];
  for (const crd of crds) {
    const kind = crd.spec.names.kind;
    const rows = referenceRows(subsection(reference, kind));
    const fields = crdFields(crd);
    for (const f of fields) {
      const row = rows.get(f.path);
      if (!row) {
        problems.push(`${kind}: ${f.path} is missing`);
        continue;
      }
      if (row.length !== 4) {
        problems.push(`${kind}: ${f.path} has ${row.length + 1} cells, not 5`);
        continue;
      }
      const [type, def, bounds] = row as [string, string, string];
      if (type !== f.type) problems.push(`${kind}: ${f.path} type is ${type}, not ${f.type}`);
      if (def !== f.default)
        problems.push(`${kind}: ${f.path} default is ${def}, not ${f.default}`);
      if (f.bounds.length === 0 && bounds !== "—")
        problems.push(`${kind}: ${f.path} has bounds ${bounds}, the CRD none`);
      const written = bounds.split(/,\s*(?=[a-z])/).map((b) => b.trim());
      for (const b of f.bounds)
        if (!bounds.includes(b)) problems.push(`${kind}: ${f.path} lacks "${b}"`);
      for (const w of written)
        if (w !== "—" && !f.bounds.includes(w))
          problems.push(`${kind}: ${f.path} states "${w}", which the CRD does not`);
    }
    const known = new Set(fields.map((f) => f.path));
    for (const path of rows.keys())
      if (!known.has(path)) problems.push(`${kind}: ${path} is not in the CRD`);
  }
  return problems;
}

// --- what the code can set -------------------------------------------------------

function sources(dir: string): string[] {
  return (readdirSync(new URL(dir, root), { recursive: true }) as string[])
    .filter((f) => f.endsWith(".ts") && !f.endsWith(".test.ts"))
    .map((f) => read(`${dir}${f}`));
}

const CODE = [...sources("operator/"), ...sources("migration/agent/")].join("\n");

const matches = (re: RegExp, text = CODE) => [...text.matchAll(re)].map((m) => m[1] ?? "");

/** Condition reasons written as literals: `reason: "X"`, `Failure("X"`, `StepFailure(cond, "X"`. */
const reasonsInCode = new Set([
  ...matches(/\breason:\s*"([A-Z][A-Za-z]+)"/g),
  ...matches(/\bFailure\(\s*"([A-Z][A-Za-z]+)"/g),
  ...matches(/\bStepFailure\(\s*"[A-Za-z]+",\s*"([A-Z][A-Za-z]+)"/g),
]);

const CONDITION_REASONS = [
  ...new Set([
    ...Object.values(EdgeNodeConditionReason),
    ...Object.values(MigrationConditionReason),
    ...reasonsInCode,
  ]),
];

/** Event reasons recorded as literals, plus the success event chosen at run time. */
const EVENT_REASONS = [
  ...new Set([
    ...matches(/"(?:Normal|Warning)",\s*"([A-Z][A-Za-z]+)"/g),
    "MonitorInjected",
    "MigrationTriggered",
    "MigrationStarted",
    "RestoreStarted",
    "Restored",
    "MigrationSucceeded",
    "FellBackToRestart",
  ]),
];

const METRICS = [
  ...new Set(
    matches(
      /\bname:\s*"(edgeshift_[a-z_]+)"/g,
      [...sources("operator/"), ...sources("migration/"), ...sources("sidecar/")].join("\n"),
    ),
  ),
];

const missing = (text: string, names: string[]) => names.filter((n) => !text.includes(`\`${n}\``));

// --- tests -----------------------------------------------------------------------

describe("README CRD reference", () => {
  it("reads both CRDs and finds their nested fields", () => {
    expect(CRDS.map((c) => c.spec.names.kind)).toEqual(["EdgeNode", "Migration"]);
    const paths = CRDS.flatMap(crdFields).map((f) => f.path);
    expect(paths).toContain("spec.thresholds.cpu.triggerPercent");
    expect(paths).toContain("spec.cloud.nodeSelector.matchExpressions[].values");
    expect(paths).toContain("spec.reason.windowSeconds");
  });

  it("lists every spec field with its type, default, bounds and allowed values, and nothing else", () => {
    expect(referenceProblems(README, CRDS)).toEqual([]);
  });

  it("notices a missing field, a wrong default, a wrong bound and a field the CRD lacks", () => {
    const row = (path: string) => README.split("\n").find((l) => l.startsWith(`| \`${path}\` |`));
    const trigger = row("spec.thresholds.cpu.triggerPercent") ?? "";
    const cooldown = row("spec.cooldownSeconds") ?? "";
    expect(trigger).not.toBe("");
    expect(cooldown).not.toBe("");

    const dropped = README.replace(`${trigger}\n`, "");
    expect(referenceProblems(dropped, CRDS)).toEqual([
      "EdgeNode: spec.thresholds.cpu.triggerPercent is missing",
    ]);
    const wrongDefault = README.replace(cooldown, cooldown.replace("`300`", "`600`"));
    expect(referenceProblems(wrongDefault, CRDS)).toHaveLength(1);
    const wrongBound = README.replace(trigger, trigger.replace("maximum: 100", "maximum: 99"));
    expect(referenceProblems(wrongBound, CRDS).join("\n")).toMatch(/lacks "maximum: 100"/);
    const extra = README.replace(
      cooldown,
      `${cooldown}\n${cooldown.replace("cooldown", "warmup")}`,
    );
    expect(referenceProblems(extra, CRDS)).toEqual([
      "EdgeNode: spec.warmupSeconds is not in the CRD",
    ]);
  });
});

describe("README troubleshooting", () => {
  const troubleshooting = section(README, "Troubleshooting");

  it("finds the reasons the code sets (so the scan means something)", () => {
    expect(reasonsInCode).toContain("NoTarget");
    expect(reasonsInCode).toContain("PushFailed");
    expect(reasonsInCode).toContain("WatchersStarting");
    expect(CONDITION_REASONS).toContain("FellBackToRestart");
  });

  it("explains every condition and failure reason the operator and the agent can set", () => {
    expect(troubleshooting).not.toBe("");
    expect(missing(troubleshooting, CONDITION_REASONS)).toEqual([]);
  });

  it("notices a reason that went missing", () => {
    const without = troubleshooting.replaceAll("`CheckpointTimeout`", "CheckpointTimeout");
    expect(missing(without, CONDITION_REASONS)).toEqual(["CheckpointTimeout"]);
  });
});

describe("README for users", () => {
  it("names every event in the Lens section", () => {
    const lens = section(README, "Watching migrations in Lens");
    expect(EVENT_REASONS.length).toBeGreaterThanOrEqual(7);
    expect(missing(lens, EVENT_REASONS)).toEqual([]);
    for (const condition of ["Checkpointed", "ImagePushed", "Restored", "Succeeded", "Ready"])
      expect(lens).toContain(`\`${condition}\``);
  });

  it("lists every metric the code exports and every sample drop reason", () => {
    const metrics = section(README, "Metrics reference");
    expect(METRICS).toContain("edgeshift_migrations_total");
    expect(METRICS).toContain("edgeshift_agent_steps_total");
    expect(missing(metrics, METRICS)).toEqual([]);
    for (const reason of DROP_REASONS) expect(metrics).toContain(reason);
  });

  it("keeps the quick-start commands CI and users run", () => {
    expect(README).toContain(
      "```sh\nbash test/cluster/install-deps.sh && npm ci && npm run demo\n```",
    );
    expect(README).toContain("```sh\nbash .ci/run\n```");
  });
});
