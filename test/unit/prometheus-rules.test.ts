// The alerts of manifests/prometheus/rules.yaml checked and unit-tested by
// Debian's promtool: `promtool check rules` on spec.groups written out as a
// plain rule file, and `promtool test rules` on test/prometheus/rules.test.yaml
// beside it (each alert firing on input series, and not firing). A new alert
// without both kinds of case fails here.
import { execFile } from "node:child_process";
import { readFileSync } from "node:fs";
import { copyFile, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parse } from "yaml";
import {
  alertRules,
  type PrometheusBinaries,
  prometheusBinaries,
  repoRoot,
  ruleFileYaml,
  ruleGroups,
  thresholdOperands,
} from "../support/prometheus.ts";

const run = promisify(execFile);
const TESTS = join(repoRoot, "test/prometheus/rules.test.yaml");
/** The name test/prometheus/rules.test.yaml gives the extracted rule file (rule_files). */
const RULE_FILE = "edgeshift.rules.yaml";

interface AlertTest {
  eval_time: string;
  alertname: string;
  exp_alerts?: { exp_labels?: Record<string, string> }[];
}
interface TestFile {
  rule_files: string[];
  tests: { name: string; alert_rule_test?: AlertTest[] }[];
}

/** promtool's exit code and output (it reports failures on stdout). */
async function promtool(bin: string, args: string[], cwd: string) {
  try {
    const { stdout, stderr } = await run(bin, args, { cwd });
    return { code: 0, out: stdout + stderr };
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    return { code: e.code ?? -1, out: `${e.stdout ?? ""}${e.stderr ?? ""}` };
  }
}

let bins: PrometheusBinaries;
let dir: string;

beforeAll(async () => {
  bins = await prometheusBinaries();
  dir = await mkdtemp(join(tmpdir(), "edgeshift-promtool-"));
  await writeFile(join(dir, RULE_FILE), ruleFileYaml());
  await copyFile(TESTS, join(dir, "rules.test.yaml"));
});

afterAll(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe("promtool", () => {
  it("check rules: the PrometheusRule's groups are a valid rule file", async () => {
    const r = await promtool(bins.promtool, ["check", "rules", RULE_FILE], dir);
    expect(r.out).toContain(`SUCCESS: ${alertRules().length} rules found`);
    expect(r.code, r.out).toBe(0);
  });

  it("test rules: every case of test/prometheus/rules.test.yaml passes", async () => {
    const r = await promtool(bins.promtool, ["test", "rules", "rules.test.yaml"], dir);
    expect(r.code, r.out).toBe(0);
    expect(r.out).toContain("SUCCESS");
  });

  it("test rules fails when a rule changes (the tests read the manifest's rules)", async () => {
    const groups = ruleGroups().map((g) => ({
      ...g,
      rules: g.rules.map((r) =>
        r.alert === "EdgeshiftInformerRestarting"
          ? { ...r, expr: r.expr.replace("> 3", "> 20") }
          : r,
      ),
    }));
    const changed = ruleFileYaml(groups);
    expect(changed).not.toEqual(ruleFileYaml());
    const mdir = await mkdtemp(join(tmpdir(), "edgeshift-promtool-changed-"));
    try {
      await writeFile(join(mdir, RULE_FILE), changed);
      await copyFile(TESTS, join(mdir, "rules.test.yaml"));
      const r = await promtool(bins.promtool, ["test", "rules", "rules.test.yaml"], mdir);
      expect(r.code).toBe(1);
      expect(r.out).toContain("alertname: EdgeshiftInformerRestarting");
      expect(r.out).not.toContain("alertname: EdgeshiftMigrationFailed");
    } finally {
      await rm(mdir, { recursive: true, force: true });
    }
  });
});

describe("the promtool tests", () => {
  const file = parse(readFileSync(TESTS, "utf8")) as TestFile;
  const cases = file.tests.flatMap((t) => t.alert_rule_test ?? []);

  it("read the rule file the test writes", () => {
    expect(file.rule_files).toEqual([RULE_FILE]);
  });

  it("have, for every alert, a case where it fires and one where it does not", () => {
    const missing: string[] = [];
    for (const { alert } of alertRules()) {
      const mine = cases.filter((c) => c.alertname === alert);
      if (!mine.some((c) => (c.exp_alerts ?? []).length > 0))
        missing.push(`${alert}: no firing case`);
      if (!mine.some((c) => (c.exp_alerts ?? []).length === 0))
        missing.push(`${alert}: no case where it stays silent`);
    }
    expect(missing).toEqual([]);
  });

  it("name only alerts that exist (promtool passes an empty case for an unknown name)", () => {
    const known = new Set(alertRules().map((r) => r.alert));
    expect(cases.map((c) => c.alertname).filter((n) => !known.has(n))).toEqual([]);
  });
});

describe("thresholdOperands", () => {
  it("keeps what an alert compares, drops the threshold, reads absent(x) as x", () => {
    expect(thresholdOperands("sum(rate(a[5m])) > 0")).toEqual(["sum(rate(a[5m]))"]);
    expect(thresholdOperands("0.5 < sum(b)")).toEqual(["sum(b)"]);
    expect(thresholdOperands("sum(a) / sum(b) > 0.5 and sum(b) >= 3")).toEqual([
      "sum(a) / sum(b)",
      "sum(b)",
    ]);
    expect(thresholdOperands("(max(l) < 1) or absent(l)")).toEqual(["max(l)", "l"]);
    expect(thresholdOperands("a unless on (pod) b == bool 1")).toEqual(["a", "b"]);
    expect(thresholdOperands("a > b")).toEqual(["a > b"]);
    expect(() => thresholdOperands("sum(a")).toThrow(/not PromQL/);
  });

  it("finds at least one operand with an edgeshift metric in every alert", () => {
    for (const r of alertRules()) {
      const ops = thresholdOperands(r.expr);
      expect(ops.length, r.alert).toBeGreaterThan(0);
      for (const o of ops) expect(o, r.alert).toMatch(/edgeshift_/);
    }
  });
});
