import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  AppMetricReader,
  type AppMetricSpec,
  CounterRate,
  parseAppMetricSpec,
  seriesText,
  sumMatching,
} from "./app-metric.ts";

const EXPOSITION = `# HELP http_requests_total Requests served.
# TYPE http_requests_total counter
http_requests_total{method="GET",code="200"} 1027 1395066363000
http_requests_total{method="GET",code="500"} 3
http_requests_total{method="POST",code="200"} 40
http_requests_total_created{method="GET"} 1.7e9
queue_depth 12.5
odd_label{path="a \\"quoted\\" \\\\ path",x="1"} 7
nan_gauge NaN
`;

const spec = (over: Partial<AppMetricSpec> = {}): AppMetricSpec => ({
  port: 1,
  path: "/metrics",
  metric: "http_requests_total",
  matchers: [],
  type: "Counter",
  per: "Second",
  ...over,
});

describe("the application metric's series", () => {
  it("sums every series of the name that the matchers select", () => {
    expect(sumMatching(EXPOSITION, spec())).toBe(1070);
    const get = [{ label: "method", operator: "=" as const, value: "GET" }];
    expect(sumMatching(EXPOSITION, spec({ matchers: get }))).toBe(1030);
    const ok = [...get, { label: "code", operator: "!=" as const, value: "500" }];
    expect(sumMatching(EXPOSITION, spec({ matchers: ok }))).toBe(1027);
    expect(sumMatching(EXPOSITION, spec({ metric: "queue_depth" }))).toBe(12.5);
    const quoted = [{ label: "path", operator: "=" as const, value: 'a "quoted" \\ path' }];
    expect(sumMatching(EXPOSITION, spec({ metric: "odd_label", matchers: quoted }))).toBe(7);
  });

  it("is absent when nothing matches, and unusable when a series is NaN", () => {
    expect(sumMatching(EXPOSITION, spec({ metric: "http_requests" }))).toBeUndefined();
    const none = [{ label: "method", operator: "=" as const, value: "PUT" }];
    expect(sumMatching(EXPOSITION, spec({ matchers: none }))).toBeUndefined();
    expect(sumMatching(EXPOSITION, spec({ metric: "nan_gauge" }))).toBeUndefined();
    expect(sumMatching("<html>not metrics</html>", spec())).toBeUndefined();
  });

  it("writes the series as PromQL does", () => {
    expect(seriesText(spec())).toBe("http_requests_total");
    expect(seriesText(spec({ matchers: [{ label: "code", operator: "!=", value: "500" }] }))).toBe(
      'http_requests_total{code!="500"}',
    );
  });
});

describe("a counter's rate", () => {
  it("per second and per minute between scrapes; a gauge is its value", () => {
    const r = new CounterRate({ type: "Counter", per: "Second" });
    expect(r.next(100, 0)).toEqual({ status: "first" });
    expect(r.next(110, 2000)).toEqual({ status: "ok", value: 5 });
    const m = new CounterRate({ type: "Counter", per: "Minute" });
    m.next(0, 0);
    expect(m.next(3, 1000)).toEqual({ status: "ok", value: 180 });
    expect(new CounterRate({ type: "Gauge", per: "Second" }).next(7, 0)).toEqual({
      status: "ok",
      value: 7,
    });
  });

  it("a reset (the application restarted) gives no rate, never a spike, and measures on from the new value", () => {
    const r = new CounterRate({ type: "Counter", per: "Second" });
    r.next(5000, 0);
    expect(r.next(5010, 1000)).toEqual({ status: "ok", value: 10 });
    expect(r.next(4, 2000)).toEqual({ status: "counter_reset" });
    expect(r.next(9, 3000)).toEqual({ status: "ok", value: 5 });
  });

  it("absent keeps the baseline; a lost scrape drops it", () => {
    const r = new CounterRate({ type: "Counter", per: "Second" });
    r.next(10, 0);
    expect(r.next(undefined, 1000)).toEqual({ status: "absent" });
    expect(r.next(30, 2000)).toEqual({ status: "ok", value: 10 });
    r.lost();
    expect(r.next(40, 3000)).toEqual({ status: "first" });
  });
});

describe("EDGESHIFT_APP_METRIC", () => {
  it("defaults path, per and matchers' operator", () => {
    expect(
      parseAppMetricSpec(
        JSON.stringify({
          port: 8080,
          metric: "x_total",
          type: "Counter",
          matchers: [{ label: "a", value: "b" }],
        }),
      ),
    ).toEqual({
      port: 8080,
      path: "/metrics",
      metric: "x_total",
      matchers: [{ label: "a", operator: "=", value: "b" }],
      type: "Counter",
      per: "Second",
    });
  });

  it("lists every problem", () => {
    expect(parseAppMetricSpec("{")).toEqual(["EDGESHIFT_APP_METRIC is not JSON"]);
    const problems = parseAppMetricSpec(
      JSON.stringify({
        port: 0,
        path: "metrics",
        metric: "1bad",
        type: "Histogram",
        per: "Hour",
        matchers: [
          { label: "a-b", value: "x" },
          { label: "ok", operator: "=~", value: "x" },
        ],
      }),
    );
    expect(problems).toHaveLength(7);
  });
});

describe("scraping on localhost", () => {
  let server: Server;
  let port = 0;
  let answer: { code: number; body: string; delayMs?: number } = { code: 200, body: "" };
  beforeAll(async () => {
    server = createServer((_req, res) => {
      setTimeout(() => {
        res.writeHead(answer.code, { "content-type": "text/plain" });
        res.end(answer.body);
      }, answer.delayMs ?? 0);
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    port = (server.address() as AddressInfo).port;
  });
  afterAll(async () => {
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  });

  it("reads a counter's rate, and says when the endpoint fails, answers late or lacks the series", async () => {
    let t = 0;
    const reader = new AppMetricReader(spec({ port }), { intervalMs: 500 });
    expect(reader.take(t, 500)).toBeUndefined();
    answer = { code: 200, body: "http_requests_total 100\n" };
    await reader.scrape(() => t);
    expect(reader.take(t, 500)).toEqual({ status: "first" });
    t = 1000;
    answer = { code: 200, body: "http_requests_total 160\n" };
    await reader.scrape(() => t);
    expect(reader.take(t, 500)).toEqual({ status: "ok", value: 60 });
    answer = { code: 500, body: "oops" };
    await reader.scrape(() => t);
    expect(reader.take(t, 500)).toEqual({ status: "scrape_failed" });
    // Later than the timeout (0.8 of the interval): failed, not waited for.
    answer = { code: 200, body: "http_requests_total 200\n", delayMs: 1500 };
    const started = Date.now();
    await reader.scrape(() => t);
    expect(Date.now() - started).toBeLessThan(1400);
    expect(reader.take(t, 500)).toEqual({ status: "scrape_failed" });
    answer = { code: 200, body: "other_total 1\n" };
    await reader.scrape(() => t);
    expect(reader.take(t, 500)).toEqual({ status: "absent" });
    // Nothing scraped for more than two intervals: failed.
    expect(reader.take(t + 1001, 500)).toEqual({ status: "scrape_failed" });
  });

  it("a closed port is scrape_failed", async () => {
    const closed = createServer();
    await new Promise<void>((r) => closed.listen(0, "127.0.0.1", r));
    const free = (closed.address() as AddressInfo).port;
    await new Promise((r) => closed.close(r));
    const reader = new AppMetricReader(spec({ port: free, type: "Gauge" }), { intervalMs: 1000 });
    await reader.scrape();
    expect(reader.take(Date.now(), 1000)).toEqual({ status: "scrape_failed" });
  });
});
