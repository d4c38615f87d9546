// Docker cannot run here, so this checks the Dockerfile by reading it, and
// checks what it would produce by running its compile step for real and
// starting every program its entrypoint script names from that output.
import { execFile } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { copyFile, mkdtemp, readdir, readFile, rm, symlink } from "node:fs/promises";
import { builtinModules } from "node:module";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

const run = promisify(execFile);
const root = resolve(import.meta.dirname, "../..");

interface Instruction {
  cmd: string;
  args: string;
}

interface Stage {
  image: string;
  name?: string;
  instructions: Instruction[];
}

/** Dockerfile instructions, continuation lines joined, comments and parser directives dropped. */
function parseDockerfile(text: string): Stage[] {
  const logical: string[] = [];
  let current = "";
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (current === "" && (line === "" || line.startsWith("#"))) continue;
    if (line.startsWith("#")) continue; // a comment inside a continued instruction
    if (line.endsWith("\\")) {
      current += `${line.slice(0, -1)} `;
      continue;
    }
    logical.push(current + line);
    current = "";
  }
  if (current) logical.push(current);
  const stages: Stage[] = [];
  for (const l of logical) {
    const m = /^(\S+)\s*(.*)$/.exec(l);
    if (!m) continue;
    const cmd = (m[1] ?? "").toUpperCase();
    const args = m[2] ?? "";
    if (cmd === "FROM") {
      const from = /^(?:--\S+\s+)*(\S+)(?:\s+AS\s+(\S+))?$/i.exec(args);
      stages.push({ image: from?.[1] ?? "", name: from?.[2], instructions: [] });
    } else {
      const stage = stages.at(-1);
      if (!stage) throw new Error(`${cmd} before the first FROM`);
      stage.instructions.push({ cmd, args });
    }
  }
  return stages;
}

const dockerfile = readFileSync(join(root, "Dockerfile"), "utf8");
const stages = parseDockerfile(dockerfile);
const finalStage = stages.at(-1) as Stage;
const buildStages = stages.slice(0, -1);
const script = readFileSync(join(root, "docker/edgeshift.sh"), "utf8");
const pkg = JSON.parse(readFileSync(join(root, "package.json"), "utf8")) as {
  dependencies: Record<string, string>;
  devDependencies: Record<string, string>;
};

const all = (s: Stage, cmd: string) => s.instructions.filter((i) => i.cmd === cmd);
const copyParts = (i: Instruction) => i.args.split(/\s+/).filter((a) => !a.startsWith("--"));
const copyFlag = (i: Instruction, flag: string) => new RegExp(`--${flag}=(\\S+)`).exec(i.args)?.[1];

/** program -> the compiled file the entrypoint script starts for it. */
function scriptPrograms(): Map<string, { file: string; line: string }> {
  const out = new Map<string, { file: string; line: string }>();
  const arms = script.matchAll(/^\s*([a-z][a-z-]*)\)\s*\n([\s\S]*?);;/gm);
  for (const [, program, body] of arms) {
    const exec = (body ?? "").split("\n").find((l) => l.trim().startsWith("exec node"));
    const file = exec && /"\$app\/(dist\/[^"]+\.js)"/.exec(exec)?.[1];
    if (program && exec && file) out.set(program, { file, line: exec.trim() });
  }
  return out;
}

describe("Dockerfile", () => {
  it("is a multi-stage build on Node 24 slim, final stage last", () => {
    expect(stages.length).toBeGreaterThanOrEqual(2);
    for (const s of stages) expect(s.image).toMatch(/^node:24-bookworm-slim$/);
    expect(buildStages.map((s) => s.name)).toContain("build");
  });

  it("compiles in the build stage with the build tsconfig", () => {
    const runs = buildStages.flatMap((s) => all(s, "RUN")).map((i) => i.args);
    expect(runs.some((r) => /\bnpm (ci|install)\b/.test(r))).toBe(true);
    expect(runs.some((r) => /\btsc\b.*-p tsconfig\.build\.json/.test(r))).toBe(true);
  });

  it("installs only production dependencies in the final stage and no toolchain", () => {
    const runs = all(finalStage, "RUN").map((i) => i.args);
    const installs = runs.filter((r) => /\bnpm (ci|install|i)\b/.test(r));
    expect(installs).toHaveLength(1);
    expect(installs[0]).toMatch(/npm (ci|install)\b.*--omit=dev/);
    for (const r of runs) expect(r).not.toMatch(/\b(tsc|typescript|npx|vitest|biome)\b/);
    for (const dev of Object.keys(pkg.devDependencies)) {
      for (const r of runs)
        expect(r).not.toMatch(new RegExp(`\\s${dev.replace("/", "\\/")}(@|\\s|$)`));
    }
  });

  it("copies only compiled JavaScript from the build stage, and no sources", () => {
    const copies = all(finalStage, "COPY");
    const fromBuild = copies.filter((c) => copyFlag(c, "from"));
    expect(fromBuild.length).toBeGreaterThan(0);
    for (const c of fromBuild) {
      const [src] = copyParts(c);
      expect(src).toMatch(/\/dist\/?$/);
    }
    for (const c of copies.filter((x) => !copyFlag(x, "from"))) {
      for (const src of copyParts(c).slice(0, -1)) {
        expect(src).not.toMatch(/^(operator|sidecar|migration|test|node_modules|tsconfig)/);
      }
    }
  });

  it("runs as a numeric non-root user through the entrypoint script", () => {
    const users = all(finalStage, "USER");
    const user = users.at(-1)?.args ?? "";
    const uid = Number(user.split(":")[0]);
    expect(Number.isInteger(uid) && uid > 0).toBe(true);
    expect(uid).toBe(65532);
    const entrypoint = all(finalStage, "ENTRYPOINT").at(-1)?.args ?? "";
    expect(JSON.parse(entrypoint)).toEqual(["/usr/local/bin/edgeshift"]);
    const scriptCopy = all(finalStage, "COPY").find((c) =>
      copyParts(c).includes("docker/edgeshift.sh"),
    );
    expect(scriptCopy && copyParts(scriptCopy).at(-1)).toBe("/usr/local/bin/edgeshift");
    // The script's default home is where the final stage puts dist/.
    const workdir = all(finalStage, "WORKDIR").at(-1)?.args;
    expect(script).toContain(`app="\${EDGESHIFT_HOME:-${workdir}}"`);
    const distCopy = all(finalStage, "COPY").find((c) => copyFlag(c, "from"));
    expect(distCopy && copyParts(distCopy).at(-1)).toMatch(/^(\.\/dist|\/app\/dist)\/?$/);
  });

  it("sends only what the build copies through .dockerignore", () => {
    const ignore = readFileSync(join(root, ".dockerignore"), "utf8")
      .split("\n")
      .map((l) => l.trim())
      .filter((l) => l && !l.startsWith("#"));
    expect(ignore[0]).toBe("*");
    const allowed = new Set(ignore.filter((l) => l.startsWith("!")).map((l) => l.slice(1)));
    for (const s of stages) {
      for (const c of all(s, "COPY").filter((x) => !copyFlag(x, "from"))) {
        for (const src of copyParts(c).slice(0, -1)) {
          expect(allowed.has(src) || allowed.has(`${src}/`), `${src} is in the build context`).toBe(
            true,
          );
        }
      }
    }
  });
});

describe("entrypoint script and build output", () => {
  let out: string;
  const programs = scriptPrograms();
  // Node 24 first on PATH: the script runs `node` as the image would.
  const PATH = `${dirname(process.execPath)}:${process.env.PATH ?? ""}`;

  beforeAll(async () => {
    out = await mkdtemp(join(tmpdir(), "edgeshift-image-"));
    await run(process.execPath, [
      join(root, "node_modules/typescript/bin/tsc"),
      "-p",
      join(root, "tsconfig.build.json"),
      "--outDir",
      join(out, "dist"),
    ]);
    // The image's layout: package.json ("type": "module") and node_modules beside dist/.
    await copyFile(join(root, "package.json"), join(out, "package.json"));
    await symlink(join(root, "node_modules"), join(out, "node_modules"));
  }, 60_000);

  afterAll(async () => {
    if (out) await rm(out, { recursive: true, force: true });
  });

  it("names exactly the operator, sidecar, agent and image-cleanup programs", () => {
    expect([...programs.keys()].sort()).toEqual(["agent", "image-cleanup", "operator", "sidecar"]);
    expect(programs.get("sidecar")?.line).toMatch(/--max-semi-space-size=1/);
    expect(programs.get("agent")?.line).toMatch(/--expose-gc/);
    expect(programs.get("operator")?.line).toMatch(/--enable-source-maps/);
  });

  it("finds every program it starts in the build output", () => {
    for (const [program, { file }] of programs) {
      expect(existsSync(join(out, file)), `${program}: ${file}`).toBe(true);
    }
  });

  it("ships no test files and imports only production dependencies", async () => {
    const files = (await readdir(join(out, "dist"), { recursive: true })).filter((f) =>
      f.endsWith(".js"),
    );
    expect(files.length).toBeGreaterThan(10);
    expect(files.filter((f) => f.endsWith(".test.js"))).toEqual([]);
    const builtins = new Set(builtinModules);
    const allowed = new Set(Object.keys(pkg.dependencies));
    const bad: string[] = [];
    for (const f of files) {
      const text = await readFile(join(out, "dist", f), "utf8");
      const specs = [
        ...text.matchAll(/^\s*(?:import|export)\s[^;]*?\sfrom\s*["']([^"']+)["']/gm),
        ...text.matchAll(/^\s*import\s*["']([^"']+)["']/gm),
        ...text.matchAll(/\bimport\(\s*["']([^"']+)["']\s*\)/g),
      ].map((m) => m[1] ?? "");
      for (const spec of specs) {
        if (spec.startsWith(".") || spec.startsWith("node:") || builtins.has(spec)) continue;
        const name = spec.startsWith("@")
          ? spec.split("/").slice(0, 2).join("/")
          : spec.split("/")[0];
        if (!allowed.has(name ?? "")) bad.push(`${f}: ${spec}`);
      }
    }
    expect(bad).toEqual([]);
  });

  it.each(["operator", "sidecar", "agent", "image-cleanup"])(
    "starts %s with its Node flags and refuses to run without configuration",
    async (program) => {
      const r = await run("sh", [join(root, "docker/edgeshift.sh"), program], {
        env: { PATH, EDGESHIFT_HOME: out },
      }).then(
        () => ({ code: 0, output: "" }),
        (err: { code: number; stdout: string; stderr: string }) => ({
          code: err.code,
          output: err.stdout + err.stderr,
        }),
      );
      // Exit 2 is each program's "invalid configuration": the compiled file and
      // all its imports loaded, and Node accepted the flags.
      expect(r.code).toBe(2);
      expect(r.output).toMatch(/is required/);
    },
  );

  it("rejects an unknown or missing program with a usage message", async () => {
    for (const args of [["bogus"], []]) {
      const err = await run("sh", [join(root, "docker/edgeshift.sh"), ...args], {
        env: { PATH, EDGESHIFT_HOME: out },
      }).catch((e: { code: number; stderr: string }) => e);
      expect(err).toMatchObject({ code: 64 });
      expect((err as { stderr: string }).stderr).toMatch(
        /usage: edgeshift operator\|sidecar\|agent\|image-cleanup/,
      );
    }
  });
});
