// The application's own metric (EdgeNode spec.thresholds.application): the
// monitor shares the pod's network namespace, so it reads the application's
// Prometheus endpoint on localhost once per interval. Parsing and the counter
// arithmetic are pure; AppMetricReader does the HTTP.
import { request } from "node:http";
import type { AppStatus } from "./protocol.ts";

export interface SeriesMatcher {
  label: string;
  operator: "=" | "!=";
  value: string;
}

/** What EDGESHIFT_APP_METRIC carries (JSON), defaults applied by the operator. */
export interface AppMetricSpec {
  port: number;
  path: string;
  metric: string;
  matchers: SeriesMatcher[];
  type: "Gauge" | "Counter";
  per: "Second" | "Minute";
}

export interface AppReading {
  status: AppStatus;
  /** Only with status ok. */
  value?: number;
}

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;
/** Bodies past this are not read on (a misbehaving endpoint must not grow the monitor). */
export const MAX_BODY_BYTES = 4 << 20;

/** Checks EDGESHIFT_APP_METRIC; the problems found, each a sentence, or the spec. */
export function parseAppMetricSpec(raw: string): AppMetricSpec | string[] {
  let o: Record<string, unknown>;
  try {
    o = JSON.parse(raw);
  } catch {
    return ["EDGESHIFT_APP_METRIC is not JSON"];
  }
  if (typeof o !== "object" || o === null || Array.isArray(o))
    return ["EDGESHIFT_APP_METRIC must be a JSON object"];
  const problems: string[] = [];
  const { port, path = "/metrics", metric, matchers = [], type, per = "Second" } = o;
  if (!Number.isInteger(port) || (port as number) < 1 || (port as number) > 65535)
    problems.push("EDGESHIFT_APP_METRIC.port must be an integer 1-65535");
  if (typeof path !== "string" || !path.startsWith("/") || /\s/.test(path))
    problems.push('EDGESHIFT_APP_METRIC.path must start with "/" and hold no spaces');
  if (typeof metric !== "string" || !METRIC_NAME.test(metric))
    problems.push("EDGESHIFT_APP_METRIC.metric must be a Prometheus metric name");
  if (type !== "Gauge" && type !== "Counter")
    problems.push("EDGESHIFT_APP_METRIC.type must be Gauge or Counter");
  if (per !== "Second" && per !== "Minute")
    problems.push("EDGESHIFT_APP_METRIC.per must be Second or Minute");
  const ms: SeriesMatcher[] = [];
  if (!Array.isArray(matchers)) problems.push("EDGESHIFT_APP_METRIC.matchers must be a list");
  else
    for (const m of matchers as Record<string, unknown>[]) {
      const operator = m?.operator ?? "=";
      if (
        typeof m?.label !== "string" ||
        !LABEL_NAME.test(m.label) ||
        typeof m.value !== "string" ||
        (operator !== "=" && operator !== "!=")
      ) {
        problems.push(`EDGESHIFT_APP_METRIC.matchers has an invalid matcher ${JSON.stringify(m)}`);
        continue;
      }
      ms.push({ label: m.label, operator, value: m.value });
    }
  if (problems.length) return problems;
  return {
    port: port as number,
    path: path as string,
    metric: metric as string,
    matchers: ms,
    type: type as AppMetricSpec["type"],
    per: per as AppMetricSpec["per"],
  };
}

/** `name{a="x",b="y"}` as the operator's reason and the README write a series. */
export function seriesText(spec: Pick<AppMetricSpec, "metric" | "matchers">): string {
  if (spec.matchers.length === 0) return spec.metric;
  const ls = spec.matchers.map((m) => `${m.label}${m.operator}${JSON.stringify(m.value)}`);
  return `${spec.metric}{${ls.join(",")}}`;
}

/**
 * One sample line of the text exposition format: name, labels and value, or
 * undefined for a comment, a blank or a line that is not one.
 */
function parseLine(
  line: string,
): { name: string; labels: Map<string, string>; value: number } | undefined {
  const l = line.trim();
  if (!l || l.startsWith("#")) return undefined;
  const nameEnd = l.search(/[{\s]/);
  if (nameEnd <= 0) return undefined;
  const name = l.slice(0, nameEnd);
  if (!METRIC_NAME.test(name)) return undefined;
  const labels = new Map<string, string>();
  let i = nameEnd;
  if (l[i] === "{") {
    i++;
    for (;;) {
      while (l[i] === " " || l[i] === ",") i++;
      if (l[i] === "}") {
        i++;
        break;
      }
      const eq = l.indexOf("=", i);
      if (eq < 0) return undefined;
      const label = l.slice(i, eq).trim();
      if (!LABEL_NAME.test(label) || l[eq + 1] !== '"') return undefined;
      let value = "";
      let j = eq + 2;
      for (; j < l.length && l[j] !== '"'; j++) {
        if (l[j] === "\\") {
          j++;
          value += l[j] === "n" ? "\n" : (l[j] ?? "");
        } else value += l[j];
      }
      if (j >= l.length) return undefined;
      labels.set(label, value);
      i = j + 1;
    }
  }
  // The value, then an optional timestamp.
  const [raw] = l.slice(i).trim().split(/\s+/);
  if (raw === undefined || raw === "") return undefined;
  const value =
    raw === "+Inf"
      ? Number.POSITIVE_INFINITY
      : raw === "-Inf"
        ? Number.NEGATIVE_INFINITY
        : Number(raw);
  if (Number.isNaN(value) && raw !== "NaN") return undefined;
  return { name, labels, value };
}

function matches(labels: Map<string, string>, ms: SeriesMatcher[]): boolean {
  // An absent label matches "" (as in PromQL).
  return ms.every((m) => ((labels.get(m.label) ?? "") === m.value) === (m.operator === "="));
}

/**
 * The sum of every series of `spec.metric` that the matchers select in a
 * Prometheus text exposition, or undefined when none does. A NaN or infinite
 * series makes the sum unusable: undefined too.
 */
export function sumMatching(
  text: string,
  spec: Pick<AppMetricSpec, "metric" | "matchers">,
): number | undefined {
  let found = false;
  let sum = 0;
  for (const line of text.split("\n")) {
    if (!line.startsWith(spec.metric)) continue;
    const s = parseLine(line);
    if (!s || s.name !== spec.metric || !matches(s.labels, spec.matchers)) continue;
    found = true;
    sum += s.value;
  }
  return found && Number.isFinite(sum) ? sum : undefined;
}

/**
 * A gauge's value, or a counter's rate between two scrapes (per second or per
 * minute). A counter that went down was reset (the application restarted): no
 * rate for that interval, so a restart never shows as a spike; the next
 * interval measures from the new value.
 */
export class CounterRate {
  #last: { value: number; at: number } | undefined;
  readonly spec: Pick<AppMetricSpec, "type" | "per">;
  constructor(spec: Pick<AppMetricSpec, "type" | "per">) {
    this.spec = spec;
  }

  next(value: number | undefined, at: number): AppReading {
    if (value === undefined) return { status: "absent" };
    if (this.spec.type === "Gauge") return { status: "ok", value };
    const last = this.#last;
    this.#last = { value, at };
    if (!last) return { status: "first" };
    if (value < last.value) return { status: "counter_reset" };
    const seconds = (at - last.at) / 1000;
    if (!(seconds > 0)) return { status: "first" };
    const perSecond = (value - last.value) / seconds;
    return { status: "ok", value: this.spec.per === "Minute" ? perSecond * 60 : perSecond };
  }

  /** A failed scrape loses the baseline: the next rate starts from the next good one. */
  lost(): void {
    this.#last = undefined;
  }
}

/** GET http://<host>:<port><path> within `timeoutMs`: the body, or undefined. */
function fetchText(
  host: string,
  spec: AppMetricSpec,
  timeoutMs: number,
): Promise<string | undefined> {
  return new Promise((resolve) => {
    const req = request(
      {
        host,
        port: spec.port,
        path: spec.path,
        method: "GET",
        timeout: timeoutMs,
        headers: { accept: "text/plain" },
      },
      (res) => {
        if (res.statusCode !== 200) {
          res.resume();
          resolve(undefined);
          return;
        }
        const chunks: Buffer[] = [];
        let size = 0;
        res.on("data", (c: Buffer) => {
          size += c.length;
          if (size > MAX_BODY_BYTES) {
            req.destroy();
            resolve(undefined);
          } else chunks.push(c);
        });
        res.on("end", () => resolve(Buffer.concat(chunks).toString("utf8")));
        res.on("error", () => resolve(undefined));
      },
    );
    const timer = setTimeout(() => req.destroy(), timeoutMs);
    req.on("close", () => clearTimeout(timer));
    req.on("timeout", () => req.destroy());
    req.on("error", () => resolve(undefined));
    req.end();
  });
}

/**
 * Scrapes in the background, one request at a time: each interval the monitor
 * takes the latest reading (taken at most one interval ago) and starts the next
 * scrape. A reading older than two intervals counts as scrape_failed.
 */
export class AppMetricReader {
  readonly #spec: AppMetricSpec;
  readonly #host: string;
  readonly #timeoutMs: number;
  readonly #rate: CounterRate;
  #reading: { r: AppReading; at: number } | undefined;
  #inFlight = false;

  constructor(spec: AppMetricSpec, opts: { intervalMs: number; host?: string }) {
    this.#spec = spec;
    this.#host = opts.host ?? "127.0.0.1";
    // Answered within the interval, or not at all.
    this.#timeoutMs = Math.max(100, Math.min(opts.intervalMs * 0.8, 10_000));
    this.#rate = new CounterRate(spec);
  }

  /** The reading to sign into this interval's sample (undefined before the first scrape ended). */
  take(now: number, intervalMs: number): AppReading | undefined {
    const latest = this.#reading;
    if (!latest) return undefined;
    if (now - latest.at > 2 * intervalMs) return { status: "scrape_failed" };
    return latest.r;
  }

  /** Starts a scrape unless one is still running; resolves when it has ended. */
  async scrape(now: () => number = Date.now): Promise<void> {
    if (this.#inFlight) return;
    this.#inFlight = true;
    try {
      const body = await fetchText(this.#host, this.#spec, this.#timeoutMs);
      const at = now();
      if (body === undefined) {
        this.#rate.lost();
        this.#reading = { r: { status: "scrape_failed" }, at };
        return;
      }
      this.#reading = { r: this.#rate.next(sumMatching(body, this.#spec), at), at };
    } finally {
      this.#inFlight = false;
    }
  }
}
