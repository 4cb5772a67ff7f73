// The nats-server config syntax and the keys the broker reads from it.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseConfig, parseConfigFile } from "../src/broker/config-file.js";
import { loadConfigFile } from "../src/broker/config.js";
import { websocketFromFlags } from "../src/cli/broker-command.js";

let dir: string;
beforeAll(() => (dir = mkdtempSync(path.join(tmpdir(), "nex-conf-"))));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function write(name: string, text: string): string {
  const file = path.join(dir, name);
  writeFileSync(file, text);
  return file;
}

const plain = (text: string, env: NodeJS.ProcessEnv = {}) =>
  Object.fromEntries([...parseConfig(text, "t.conf", env)].map(([k, v]) => [k, v.kind === "map" || v.kind === "list" ? v.kind : v.value]));

describe("config syntax", () => {
  it("reads `:`, `=` and space separators, comments, quotes and separators", () => {
    expect(plain('a: 1\nb = "two" # comment\nc three // another\nd: \'raw\\n\'; e: yes, f off\n')).toEqual({ a: 1, b: "two", c: "three", d: "raw\\n", e: true, f: false });
  });

  it("reads size suffixes and keeps durations as strings", () => {
    expect(plain("a: 1MB\nb: 64k\nc: 2KB\nd: 1GB\ne: 10s\nf: 1.5\n")).toEqual({ a: 1024 * 1024, b: 64000, c: 2048, d: 1024 ** 3, e: "10s", f: 1.5 });
  });

  it("reads nested blocks and lists, with line numbers", () => {
    const m = parseConfig("x {\n  y: [1, 2\n 3]\n  z { w: true }\n}\n");
    const x = m.get("x")!;
    expect(x.kind).toBe("map");
    const inner = x.kind === "map" ? x.value : new Map<string, never>();
    const y = inner.get("y")!;
    expect(y.line).toBe(2);
    expect(y.kind === "list" ? y.value.map((v: { value: unknown }) => v.value) : []).toEqual([1, 2, 3]);
  });

  it("resolves $variables from enclosing blocks, then the environment", () => {
    expect(plain("pw: secret\nb { c: $pw }\nd: $HOME_X\n", { HOME_X: "/h" })).toMatchObject({ pw: "secret", d: "/h" });
    expect(() => parseConfig("a: $NOPE\n", "t.conf", {})).toThrow(/t\.conf:1: variable reference for "NOPE"/);
  });

  it("includes files relative to the including one", () => {
    write("inc.conf", "port: 4333\n");
    const main = write("main.conf", "host: 0.0.0.0\ninclude ./inc.conf\n");
    const m = parseConfigFile(main);
    expect(m.get("port")?.value).toBe(4333);
    expect(m.get("host")?.value).toBe("0.0.0.0");
  });

  it("refuses an include loop, naming the file and line, instead of recursing until the stack overflows", () => {
    const self = write("self.conf", "port: 1\ninclude ./self.conf\n");
    expect(() => parseConfigFile(self)).toThrow(/self\.conf:2: include loop/);
    write("ping.conf", "a: 1\ninclude pong.conf\n");
    const pong = write("pong.conf", "b: 2\ninclude 'ping.conf'\n");
    expect(() => parseConfigFile(pong)).toThrow(/ping\.conf:2: include loop/);
    // The same file twice, one after the other, is not a loop.
    write("twice-inc.conf", "c: 3\n");
    expect(parseConfigFile(write("twice.conf", "include twice-inc.conf\ninclude twice-inc.conf\n")).get("c")?.value).toBe(3);
  });

  it("refuses blocks and lists nested past the limit with a ConfigError, not a stack overflow", () => {
    const deep = 100_000;
    expect(() => parseConfig("a: " + "{b: ".repeat(deep) + "1" + "}".repeat(deep))).toThrow(/nested deeper than/);
    expect(() => parseConfig("a: " + "[".repeat(deep) + "]".repeat(deep))).toThrow(/nested deeper than/);
    expect(() => parseConfig("a: " + "[{b: ".repeat(deep))).toThrow(/nested deeper than/);
    // A chain of includes counts too.
    for (let i = 0; i < 80; i++) write(`chain${i}.conf`, i === 79 ? "end: 1\n" : `x${i} { include chain${i + 1}.conf }\n`);
    expect(() => parseConfigFile(path.join(dir, "chain0.conf"))).toThrow(/nested deeper than/);
    // Ordinary nesting is fine.
    expect(parseConfig("a { b { c { d: [1, [2, { e: 3 }]] } } }\n").get("a")?.kind).toBe("map");
  });

  it("a $variable cannot refer to itself or to a later key; an environment value is not expanded again", () => {
    expect(() => parseConfig("a: $a\n", "t.conf", {})).toThrow(/variable reference for "a"/);
    expect(() => parseConfig("a: $b\nb: $a\n", "t.conf", {})).toThrow(/variable reference for "b"/);
    expect(() => parseConfig("b { a: $b }\n", "t.conf", {})).toThrow(/variable reference for "b"/);
    expect(plain("a: $X\n", { X: "$X" })).toEqual({ a: "$X" });
  });

  it("reports bad syntax with its line", () => {
    expect(() => parseConfig('a: 1\nb: "open\n')).toThrow(/:2: unterminated string/);
    expect(() => parseConfig("a {\n b: 1\n")).toThrow(/expected '}'/);
    expect(() => parseConfig("a:\n")).toThrow(/:1: key "a" has no value/);
  });
});

describe("config keys", () => {
  it("maps the supported keys to broker options", () => {
    const file = write(
      "full.conf",
      `listen: "0.0.0.0:4333"
http: 8333
max_payload: 2MB
max_pending: 64MB
write_deadline: "5s"
authorization {
  timeout: 1.5
  default_permissions { publish: ["a.>"] }
  users: [
    { user: u, password: p }
    { user: v, password: p, permissions: { subscribe: { allow: "x", deny: ["y"] }, allow_responses: { max: 3, expires: "1m" } } }
  ]
}
tls { cert_file: "c.pem", key_file: "k.pem", ca_file: "ca.pem", verify: true, timeout: 3 }
websocket { listen: "127.0.0.1:8080", no_tls: true, compression: true, allowed_origins: ["https://app.example.com"], handshake_timeout: "3s" }
jetstream { store_dir: "/data" }
`,
    );
    expect(loadConfigFile(file)).toEqual({
      host: "0.0.0.0",
      port: 4333,
      httpPort: 8333,
      maxPayload: 2 * 1024 * 1024,
      maxPending: 64 * 1024 * 1024,
      writeDeadlineMs: 5000,
      authTimeoutMs: 1500,
      auth: {
        defaultPermissions: { publish: { allow: ["a.>"] } },
        users: [
          { user: "u", password: "p" },
          { user: "v", password: "p", permissions: { subscribe: { allow: ["x"], deny: ["y"] }, allow_responses: { max: 3, expires_ms: 60_000 } } },
        ],
      },
      tls: { certFile: "c.pem", keyFile: "k.pem", caFile: "ca.pem", verify: true, timeoutMs: 3000 },
      websocket: { host: "127.0.0.1", port: 8080, compression: true, allowedOrigins: ["https://app.example.com"], handshakeTimeoutMs: 3000 },
      jetstream: true,
      dataDir: "/data",
    });
  });

  it("reads a websocket block as nats-server does: TLS or no_tls required, a port required", () => {
    expect(loadConfigFile(write("wstls.conf", 'websocket { port: -1, tls { cert_file: "c.pem", key_file: "k.pem" } }\n')).websocket).toEqual({
      port: 0,
      tls: { certFile: "c.pem", keyFile: "k.pem" },
    });
    expect(() => loadConfigFile(write("wsplain.conf", "websocket { port: 8080 }\n"))).toThrow(/websocket requires TLS configuration/);
    expect(() => loadConfigFile(write("wsnoport.conf", "websocket { no_tls: true }\n"))).toThrow(/websocket needs a port/);
    expect(() => loadConfigFile(write("wsjwt.conf", "websocket { port: 1, no_tls: true, jwt_cookie: x }\n"))).toThrow(/unsupported key "jwt_cookie" in websocket/);
  });

  it("judges allowed origins alike in the file and in --ws-allowed-origin: scheme://host[:port], nothing else", () => {
    const inFile = (origin: string) => () =>
      loadConfigFile(write("wsorigin.conf", `websocket {\n  port: 1, no_tls: true\n  allowed_origins: ["https://ok.example", ${JSON.stringify(origin)}]\n}\n`));
    const inFlag = (origin: string) => () => websocketFromFlags({ wsPort: 1, wsAllowedOrigin: ["https://ok.example", origin] }, undefined, undefined);
    for (const good of ["http://app.example.com:8080", "https://app.example.com/", "capacitor://localhost", "https://[::1]:8443"]) {
      expect(inFile(good)().websocket?.allowedOrigins).toEqual(["https://ok.example", good]);
      expect(inFlag(good)()?.allowedOrigins).toEqual(["https://ok.example", good]);
    }
    for (const bad of ["app.example.com", "https://app.example.com/path", "https://app.example.com?q=1", "https://user@app.example.com", "null", "http://"]) {
      const why = `expected scheme://host[:port], got ${JSON.stringify(bad)}`;
      expect(inFile(bad)).toThrow(`wsorigin.conf:3: allowed_origins: ${why}`);
      expect(inFlag(bad)).toThrow(`--ws-allowed-origin: ${why}`);
    }
  });

  it("keeps JetStream off unless the file enables it, as nats-server", () => {
    expect(loadConfigFile(write("nojs.conf", "port: 1\n")).jetstream).toBe(false);
    expect(loadConfigFile(write("js.conf", "jetstream: enabled\n")).jetstream).toBe(true);
  });

  it("refuses an unsupported key with its name and line", () => {
    expect(() => loadConfigFile(write("bad1.conf", "port: 1\ncluster { port: 2 }\n"))).toThrow(/bad1\.conf:2: unsupported key "cluster"/);
    expect(() => loadConfigFile(write("bad2.conf", "authorization {\n  users: [\n    { user: a, password: b, account: X }\n  ]\n}\n"))).toThrow(
      /bad2\.conf:3: unsupported key "account" in users entry/,
    );
  });

  it("refuses an nkey with a bad checksum, naming the line", () => {
    expect(() => loadConfigFile(write("badnkey.conf", `authorization {\n  users: [\n    { nkey: U${"A".repeat(55)} }\n  ]\n}\n`))).toThrow(
      /badnkey\.conf:3: not a valid public nkey/,
    );
  });

  it("refuses bcrypt passwords, naming the line", () => {
    expect(() => loadConfigFile(write("bcrypt.conf", "authorization {\n  user: a\n  password: \"$2a$11$xyz\"\n}\n"))).toThrow(/bcrypt\.conf:3: bcrypt passwords are not supported/);
  });

  it("refuses the combinations nats-server refuses", () => {
    expect(() => loadConfigFile(write("mix.conf", "authorization {\n token: t\n users: [{user: a, password: b}]\n}\n"))).toThrow(/token and a users array/);
  });
});
