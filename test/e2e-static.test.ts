// Static assets end to end (issue #16): `nex run --type static <dir> --http-path /site` uploads a folder and
// every node's gateway serves it: content types, ETag/If-None-Match, gzip, index.html, HEAD, 404, bad
// paths (400) and methods (405), a redeploy with a changed file (new ETag, unchanged files not uploaded
// again), the bounds of a deploy, and the route served through another node's gateway. Both brokers.

import fs from "node:fs";
import http from "node:http";
import path from "node:path";
import { gunzipSync } from "node:zlib";
import { afterAll, beforeAll, expect, it } from "vitest";
import { connect } from "@nats-io/transport-node";
import { Objm } from "@nats-io/obj";
import { describeEachServer, freePort } from "./helpers/servers.js";
import { eventually } from "./helpers/wait.js";
import { type NodeProcess, NodeUnderTest, runNex, tempDir, webUrlOf } from "./helpers/nex-cli.js";

/** One request over a fresh socket, with whatever path and headers (fetch normalizes `..`, decodes gzip). */
function raw(base: string, method: string, p: string, headers: Record<string, string> = {}): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: Buffer }> {
  const u = new URL(base);
  return new Promise((resolve, reject) => {
    const req = http.request({ host: u.hostname, port: Number(u.port), method, path: p, headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (d: Buffer) => chunks.push(d));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
      res.on("error", reject);
    });
    req.on("error", reject);
    req.end();
  });
}

const CSS = `body { color: #333; }\n${"/* padding so gzip is worth it */\n".repeat(40)}`;

function writeSite(dir: string, version: string): void {
  fs.mkdirSync(path.join(dir, "docs"), { recursive: true });
  fs.mkdirSync(path.join(dir, "css"), { recursive: true });
  fs.writeFileSync(path.join(dir, "index.html"), `<!doctype html><title>site</title><p>version ${version}</p>`);
  fs.writeFileSync(path.join(dir, "css/site.css"), CSS);
  fs.writeFileSync(path.join(dir, "docs/index.html"), "<p>docs</p>");
  fs.writeFileSync(path.join(dir, "app.js"), "console.log('hi');\n");
  fs.writeFileSync(path.join(dir, "logo.png"), Buffer.from([0x89, 0x50, 0x4e, 0x47, 1, 2, 3]));
  fs.writeFileSync(path.join(dir, ".secret"), "not served");
}

describeEachServer("static assets through the node's gateway", (kind) => {
  let t: NodeUnderTest;
  let node: NodeProcess;
  let web = "";
  let env: Record<string, string>;
  let site = "";
  let firstId = "";

  /** The names in NEX_ARTIFACTS. */
  const artifacts = async (): Promise<Set<string>> => {
    const nc = await connect(t.connectOptions());
    try {
      const store = await new Objm(nc).open("NEX_ARTIFACTS");
      return new Set((await store.list()).map((o) => o.name));
    } finally {
      await nc.close();
    }
  };
  const nex = (...args: string[]) => runNex([...args, "-s", node.url], env);

  beforeAll(async () => {
    t = await NodeUnderTest.start(kind, "static", ["--web-port", "0"]);
    node = t.node;
    env = t.env;
    web = await webUrlOf(node);
    site = tempDir("nex-static-site-");
    writeSite(site, "1");
    const r = await nex("run", "--type", "static", site, "--name", "site", "--http-path", "/site");
    expect(r.stderr, r.stderr).not.toMatch(/nex: /);
    expect(r.code).toBe(0);
    firstId = r.stdout.trim();
  }, 90_000);

  afterAll(async () => {
    await t?.stop();
  });

  it("serves files with their content types, index.html for a directory, and HEAD", async () => {
    const index = await fetch(`${web}/site/`);
    expect(index.status).toBe(200);
    expect(index.headers.get("content-type")).toBe("text/html; charset=utf-8");
    expect(await index.text()).toContain("version 1");
    const css = await fetch(`${web}/site/css/site.css`);
    expect(css.headers.get("content-type")).toBe("text/css; charset=utf-8");
    expect(await css.text()).toBe(CSS);
    expect((await fetch(`${web}/site/app.js`)).headers.get("content-type")).toBe("text/javascript; charset=utf-8");
    const png = await fetch(`${web}/site/logo.png`);
    expect(png.headers.get("content-type")).toBe("image/png");
    expect([...new Uint8Array(await png.arrayBuffer())]).toEqual([0x89, 0x50, 0x4e, 0x47, 1, 2, 3]);
    expect(await (await fetch(`${web}/site/docs/`)).text()).toBe("<p>docs</p>");
    // A directory without its "/" is redirected to it (relative links), the route itself too.
    const dir = await raw(web, "GET", "/site/docs?x=1");
    expect(dir.status).toBe(301);
    expect(dir.headers.location).toBe("/site/docs/?x=1");
    expect((await raw(web, "GET", "/site")).headers.location).toBe("/site/");
    // The Location is built from the folder's path, never the path as sent: on a route at "/", `//docs`
    // answered `//docs/`, which a browser reads as the host "docs".
    expect((await raw(web, "GET", "/site//docs")).headers.location).toBe("/site/docs/");
    const head = await raw(web, "HEAD", "/site/app.js");
    expect(head.status).toBe(200);
    expect(head.body.length).toBe(0);
    expect(Number(head.headers["content-length"])).toBe("console.log('hi');\n".length);
    expect(head.headers.etag).toMatch(/^"[0-9a-f]{64}"$/);
  });

  it("answers If-None-Match with 304 and gzips for clients that accept it", async () => {
    const first = await raw(web, "GET", "/site/css/site.css");
    expect(first.headers["content-encoding"]).toBeUndefined();
    const etag = first.headers.etag as string;
    expect(etag).toMatch(/^"[0-9a-f]{64}"$/);
    const again = await raw(web, "GET", "/site/css/site.css", { "if-none-match": etag });
    expect(again.status).toBe(304);
    expect(again.body.length).toBe(0);
    expect((await raw(web, "GET", "/site/css/site.css", { "if-none-match": '"other"' })).status).toBe(200);
    const gz = await raw(web, "GET", "/site/css/site.css", { "accept-encoding": "gzip, deflate, br" });
    expect(gz.headers["content-encoding"]).toBe("gzip");
    expect(gz.headers.vary).toBe("Accept-Encoding");
    expect(gz.body.length).toBeLessThan(CSS.length);
    expect(gunzipSync(gz.body).toString()).toBe(CSS);
    expect(gz.headers.etag).not.toBe(etag);
    expect((await raw(web, "GET", "/site/css/site.css", { "accept-encoding": "gzip", "if-none-match": gz.headers.etag as string })).status).toBe(304);
    // Too small to be worth it, or not text: as is.
    expect((await raw(web, "GET", "/site/app.js", { "accept-encoding": "gzip" })).headers["content-encoding"]).toBeUndefined();
    expect((await raw(web, "GET", "/site/logo.png", { "accept-encoding": "gzip" })).headers["content-encoding"]).toBeUndefined();
    expect((await raw(web, "GET", "/site/css/site.css", { "accept-encoding": "gzip;q=0" })).headers["content-encoding"]).toBeUndefined();
  });

  it("answers 404 for a missing file, 400 for .. and encoded separators, 405 for other methods", async () => {
    const miss = await fetch(`${web}/site/nope.html`);
    expect(miss.status).toBe(404);
    expect(await miss.text()).toBe("404 Not Found\n");
    expect((await fetch(`${web}/site/.secret`)).status).toBe(404);
    for (const p of ["/site/../site/index.html", "/site/css/..", "/site/css%2fsite.css", "/site/css%2Fsite.css", "/site/css%5csite.css", "/site/%2e%2e/x", "/site/%2e/index.html", "/site/css\\site.css", "/site/%00", "/site/%zz"]) {
      expect((await raw(web, "GET", p)).status, p).toBe(400);
    }
    for (const method of ["POST", "PUT", "DELETE", "PATCH", "OPTIONS"]) {
      const r = await raw(web, method, "/site/index.html");
      expect(r.status, method).toBe(405);
      expect(r.headers.allow).toBe("GET, HEAD");
    }
    // The node keeps serving.
    expect((await fetch(`${web}/site/`)).status).toBe(200);
  });

  it("finds no file under the names of Object.prototype's members (404), and keeps serving", async () => {
    for (const name of ["constructor", "__proto__", "toString", "hasOwnProperty", "valueOf"]) {
      for (const p of [`/site/${name}`, `/site/${name}/`, `/site/docs/${name}`]) {
        const r = await raw(web, "GET", p);
        expect(r.status, p).toBe(404);
        expect((await raw(web, "GET", p, { "if-none-match": '"undefined"' })).status, p).toBe(404);
      }
    }
    expect((await fetch(`${web}/site/`)).status).toBe(200);
  });

  it("refuses bad static deploys with clear errors", async () => {
    const noPath = await nex("run", "--type", "static", site);
    expect(noPath.code).toBe(2);
    expect(noPath.stderr).toMatch(/needs an --http-path/);
    const methods = await nex("run", "--type", "static", site, "--http-path", "/m", "--http-method", "POST");
    expect(methods.code).toBe(2);
    // Flags a static deploy does not take are refused before anything is uploaded.
    const fresh = tempDir("nex-static-fresh-");
    fs.writeFileSync(path.join(fresh, "index.html"), `<p>never uploaded ${Date.now()} ${Math.random()}</p>`);
    const stored = await artifacts();
    for (const flags of [["--env", "A=b"], ["--trigger-subject", "x.y"], ["--memory", "64"], ["--concurrency", "2"], ["--allow-deploy", path.join(fresh, "index.html")], ["--http-method", "GET"]]) {
      const refused = await nex("run", "--type", "static", fresh, "--http-path", "/x", ...flags);
      expect(refused.code, flags.join(" ")).toBe(2);
      expect(refused.stderr, flags.join(" ")).toMatch(/static/);
    }
    expect((await artifacts()).size).toBe(stored.size);
    // The folder is checked before the CLI connects: against a port where no server listens, the error
    // is the folder's (a missing one, a file, an empty one, too many files, a file too large).
    const nowhere = `nats://127.0.0.1:${await freePort()}`;
    const offline = (dir: string) => runNex(["run", "--type", "static", dir, "--http-path", "/x", "-s", nowhere], env);
    const missing = await offline(path.join(tempDir("nex-static-missing-"), "none"));
    expect(missing.code, missing.stderr).toBe(3);
    expect(missing.stderr).toMatch(/cannot read/);
    const file = await offline(path.join(site, "index.html"));
    expect(file.code, file.stderr).toBe(2);
    expect(file.stderr).toMatch(/takes a folder/);
    const empty = tempDir("nex-static-empty-");
    fs.mkdirSync(path.join(empty, "sub"));
    fs.writeFileSync(path.join(empty, ".hidden"), "left out");
    const none = await offline(empty);
    expect(none.code, none.stderr).toBe(2);
    expect(none.stderr).toMatch(/no files to serve/);
    const many = tempDir("nex-static-many-");
    for (let i = 0; i < 1001; i++) fs.writeFileSync(path.join(many, `f${i}.txt`), `${i}`);
    const tooMany = await offline(many);
    expect(tooMany.code, tooMany.stderr).toBe(2);
    expect(tooMany.stderr).toMatch(/more than 1000 files/);
    const big = tempDir("nex-static-big-");
    fs.writeFileSync(path.join(big, "a.txt"), "small, first");
    fs.writeFileSync(path.join(big, "big.bin"), Buffer.alloc(17 * 1024 * 1024));
    const tooBig = await offline(big);
    expect(tooBig.code, tooBig.stderr).toBe(2);
    expect(tooBig.stderr).toMatch(/at most 16777216/);
    // Against the node the same folders upload nothing.
    expect((await nex("run", "--type", "static", big, "--http-path", "/big")).code).toBe(2);
    expect((await artifacts()).size).toBe(stored.size);
  });

  it("serves the route through another node's gateway", async () => {
    const peer = await t.peer(["--web-port", "0"]);
    const peerWeb = await webUrlOf(peer);
    const res = await fetch(`${peerWeb}/site/`);
    expect(res.status).toBe(200);
    expect(await res.text()).toContain("version 1");
  });

  it("a redeploy with a changed file serves it with a new ETag; unchanged files keep theirs and are not uploaded again", async () => {
    const stored = await artifacts();
    const before = await raw(web, "GET", "/site/index.html");
    const cssBefore = await raw(web, "GET", "/site/css/site.css");
    writeSite(site, "2");
    const r = await nex("run", "--type", "static", site, "--name", "site", "--http-path", "/site");
    expect(r.code, r.stderr).toBe(0);
    // Content-addressed: only the changed file and the new manifest were added to the store.
    expect((await artifacts()).size - stored.size).toBe(2);
    expect((await nex("workload", "stop", firstId)).code).toBe(0);
    await eventually("the new version served", async () => {
      const now = await raw(web, "GET", "/site/index.html");
      if (!now.body.toString().includes("version 2")) throw new Error("old version");
      expect(now.headers.etag).not.toBe(before.headers.etag);
      expect((await raw(web, "GET", "/site/index.html", { "if-none-match": before.headers.etag as string })).status).toBe(200);
    }, 5000);
    expect((await raw(web, "GET", "/site/css/site.css")).headers.etag).toBe(cssBefore.headers.etag);
    // Stopped, the route goes.
    expect((await nex("workload", "stop", r.stdout.trim())).code).toBe(0);
    await eventually("the route gone", async () => {
      if ((await fetch(`${web}/site/`)).status !== 404) throw new Error("still served");
    }, 5000);
  });
});
