// The Helm chart's copies of the install bundle, checked without Helm: its
// crds/ are crds/ and its files/ are manifests/ byte for byte (Helm reads
// nothing outside the chart, and Helm 4 logs every symlink it follows), and
// its versions are the bundle's. test/integration/chart.test.ts renders it.
import { readdirSync, readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { describe, expect, it } from "vitest";
import { parse } from "yaml";

const root = resolve(import.meta.dirname, "../..");
const chart = join(root, "charts/edgeshift");
const yamlFiles = (dir: string) =>
  readdirSync(dir)
    .filter((f) => f.endsWith(".yaml") && f !== "kustomization.yaml")
    .sort();

function expectSameFiles(copyDir: string, sourceDir: string) {
  const source = yamlFiles(join(root, sourceDir));
  expect(yamlFiles(join(chart, copyDir)), `charts/edgeshift/${copyDir} vs ${sourceDir}`).toEqual(
    source,
  );
  for (const f of source) {
    expect(
      readFileSync(join(chart, copyDir, f), "utf8"),
      `charts/edgeshift/${copyDir}/${f} differs from ${sourceDir}/${f}: cp ${sourceDir}/*.yaml charts/edgeshift/${copyDir}/`,
    ).toBe(readFileSync(join(root, sourceDir, f), "utf8"));
  }
}

describe("Helm chart sources", () => {
  it("carries the CRDs exactly as in crds/ (Helm installs crds/ on first install only)", () => {
    expectSameFiles("crds", "crds");
  });

  it("is made from the install bundle's own files", () => {
    for (const d of ["base", "operator", "nats", "prometheus"]) {
      expectSameFiles(`files/${d}`, `manifests/${d}`);
    }
    // Every directory the kustomization lists besides crds/ is copied.
    const k = parse(readFileSync(join(root, "manifests/kustomization.yaml"), "utf8")) as {
      resources: string[];
      images: { name: string; newTag: string }[];
    };
    const dirs = new Set(k.resources.map((r) => r.split("/")[0]));
    dirs.delete("crds");
    expect([...dirs].sort()).toEqual(
      readdirSync(join(chart, "files"))
        .sort()
        .filter((d) => d !== "prometheus"),
    );
  });

  it("installs the bundle's image version, the package's version", () => {
    const meta = parse(readFileSync(join(chart, "Chart.yaml"), "utf8")) as {
      version: string;
      appVersion: string;
    };
    const pkg = JSON.parse(readFileSync(join(root, "package.json"), "utf8")) as { version: string };
    const k = parse(readFileSync(join(root, "manifests/kustomization.yaml"), "utf8")) as {
      images: { name: string; newTag: string }[];
    };
    const values = parse(readFileSync(join(chart, "values.yaml"), "utf8")) as {
      image: { repository: string; tag: string };
    };
    expect(meta.appVersion).toBe(pkg.version);
    expect(meta.version).toBe(pkg.version);
    expect(k.images).toEqual([{ name: values.image.repository, newTag: meta.appVersion }]);
    // An empty tag means the appVersion.
    expect(values.image.tag).toBe("");
  });

  it("describes every value in its schema and requires every key values.yaml has", () => {
    interface Schema {
      type?: string;
      properties?: Record<string, Schema>;
      required?: string[];
      additionalProperties?: boolean | Schema;
      $ref?: string;
    }
    const schema = JSON.parse(readFileSync(join(chart, "values.schema.json"), "utf8")) as Schema;
    const values = parse(readFileSync(join(chart, "values.yaml"), "utf8")) as Record<
      string,
      unknown
    >;
    // Objects the schema spells out (not maps like nodeSelector) close their keys.
    const walk = (v: Record<string, unknown>, s: Schema, at: string) => {
      // A map (operator.env) has properties only to refuse some names.
      if (!s.properties || typeof s.additionalProperties === "object") return;
      expect(s.additionalProperties, `${at} additionalProperties`).toBe(false);
      expect(Object.keys(v).sort(), `${at} keys`).toEqual([...(s.required ?? [])].sort());
      for (const [k, sub] of Object.entries(s.properties)) {
        const child = v[k];
        if (child && typeof child === "object" && !Array.isArray(child) && sub.properties)
          walk(child as Record<string, unknown>, sub, `${at}.${k}`);
      }
    };
    walk(values, schema, "values");
  });
});
