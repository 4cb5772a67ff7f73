#!/usr/bin/env node
// The poker demo in one command: `npm run demo:poker` (or `node examples/poker/demo.mjs [flags]`).
//
// Starts `nex node up` with its bundled broker, a WebSocket listener (--ws-port) and the HTTP gateway
// (--web-port); deploys the user, bank and lobby services (the lobby deploys a table workload per table)
// and the web page as a static site under /poker; prints the URL to open. Ctrl-C stops the node (and
// with it every workload) and removes the demo's temporary directory.
//
// Who connects as whom. The launcher writes a broker config file (<home>/broker.conf) with two users:
//   nex-node   the node and the launcher's own `nex run` calls (no permissions block: everything);
//   poker-web  the browsers: may publish only to the poker API subjects and subscribe only to the
//              poker event subjects and _INBOX.web.> (its request replies); see WEB_PERMISSIONS below.
// The page reads poker-web's credentials and the WebSocket URL from config.json, which the launcher
// writes into the deployed copy of examples/poker/web/ (never into the source folder). The node's and
// the local admin's credentials never reach the browser.
//
// Flags: --port <n> (NATS, 4222), --ws-port <n> (9222), --web-port <n> (8080): 0 picks free ports;
// --host <addr> (127.0.0.1; the broker, WebSocket and web listeners); --home <dir> (NEX_HOME and node
// data; default a new temporary directory, removed on exit; a --home given is kept);
// --hand-pause-ms <ms> (pause between hands, tables' HAND_PAUSE_MS; 2000).
// --no-node: deploy only, onto the nodes behind NATS_URL (credentials in the URL or NATS_USER/NATS_PASSWORD),
// and exit; the page's connection then comes from --ws-url, --web-user, --web-password (or the env
// POKER_WS_URL, POKER_WEB_USER, POKER_WEB_PASSWORD), and that broker must have such a user.

import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { buildWeb } from "./build-web.mjs";

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, "../..");
const NEX = path.join(root, "bin/nex.js");

/** What a browser may do: the poker API, and nothing else (no poker.bank.transfer, no $NEX.*, no $JS.*). */
export const WEB_PERMISSIONS = {
  publish: [
    "poker.user.register",
    "poker.bank.balance",
    "poker.lobby.list",
    "poker.lobby.create",
    "poker.lobby.close",
    "poker.table.*.join",
    "poker.table.*.leave",
    "poker.table.*.act",
    "poker.table.*.state",
    "poker.table.*.hand",
  ],
  // Only the pages' own inboxes (app.js connects with inboxPrefix WEB_INBOX): not the services' replies
  // (their KV reads hold a table's deck), nor, as reply subjects of its requests, their pending requests.
  subscribe: ["poker.lobby.events", "poker.table.*.events", "_INBOX.web.>"],
};

function parseArgs(argv) {
  const o = { port: 4222, wsPort: 9222, webPort: 8080, host: "127.0.0.1", home: undefined, node: true, handPauseMs: undefined, wsUrl: process.env.POKER_WS_URL, webUser: process.env.POKER_WEB_USER, webPassword: process.env.POKER_WEB_PASSWORD };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const next = () => {
      if (i + 1 >= argv.length) usage(`${a} needs a value`);
      return argv[++i];
    };
    const port = () => {
      const n = Number(next());
      if (!Number.isInteger(n) || n < 0 || n > 65535) usage(`${a} must be a port (0-65535)`);
      return n;
    };
    if (a === "--port") o.port = port();
    else if (a === "--ws-port") o.wsPort = port();
    else if (a === "--web-port") o.webPort = port();
    else if (a === "--host") o.host = next();
    else if (a === "--home") o.home = path.resolve(next());
    else if (a === "--hand-pause-ms") o.handPauseMs = String(Number(next()));
    else if (a === "--no-node") o.node = false;
    else if (a === "--ws-url") o.wsUrl = next();
    else if (a === "--web-user") o.webUser = next();
    else if (a === "--web-password") o.webPassword = next();
    else if (a === "-h" || a === "--help") usage();
    else usage(`unknown argument ${a}`);
  }
  return o;
}

function usage(problem) {
  if (problem) console.error(`demo: ${problem}`);
  console.error("usage: node examples/poker/demo.mjs [--port n] [--ws-port n] [--web-port n] [--host addr] [--home dir] [--hand-pause-ms ms]\n" +
    "       NATS_URL=nats://user:pass@host:4222 node examples/poker/demo.mjs --no-node --ws-url ws://host:port --web-user u --web-password p");
  process.exit(problem ? 2 : 0);
}

const quote = (s) => JSON.stringify(s);

/** A nats-server format config: the node's user (all permissions) and the browsers' restricted user. */
function brokerConfig(secrets) {
  const list = (xs) => `[${xs.map(quote).join(", ")}]`;
  return `# written by examples/poker/demo.mjs
authorization {
  users: [
    { user: "nex-node", password: ${quote(secrets.node_password)} }
    { user: "poker-web", password: ${quote(secrets.web_password)}, permissions: {
        publish: { allow: ${list(WEB_PERMISSIONS.publish)} }
        subscribe: { allow: ${list(WEB_PERMISSIONS.subscribe)} }
    } }
  ]
}
`;
}

/** Secrets of this demo home, made once: the broker passwords and the bank's TABLE_KEY. */
function loadSecrets(home) {
  const file = path.join(home, "poker-demo-secrets.json");
  if (existsSync(file)) return JSON.parse(readFileSync(file, "utf8"));
  const hex = (n) => randomBytes(n).toString("hex");
  const secrets = { node_password: hex(16), web_password: hex(16), table_key: hex(32) };
  writeFileSync(file, JSON.stringify(secrets, null, 2), { mode: 0o600 });
  return secrets;
}

function nex(args, env) {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [NEX, ...args], { cwd: root, env, stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    let err = "";
    child.stdout.on("data", (d) => (out += d));
    child.stderr.on("data", (d) => (err += d));
    child.on("error", reject);
    child.on("close", (code) => (code === 0 ? resolve(out.trim()) : reject(new Error(`nex ${args.slice(0, 2).join(" ")} failed (${code}):\n${err || out}`))));
  });
}

/** Starts `nex node up`; resolves with the child and the URLs of its banner. */
function startNode(o, env, confFile, secrets) {
  const args = [NEX, "node", "up", "--broker-config", confFile, "--user", "nex-node", "--password", secrets.node_password,
    "--host", o.host, "--port", String(o.port), "--ws-port", String(o.wsPort), "--ws-host", o.host, "--web-port", String(o.webPort), "--web-host", o.host,
    "--data-dir", path.join(o.home, "node"), "--name", "poker-demo"];
  const child = spawn(process.execPath, args, { cwd: root, env, stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  let log = "";
  child.stderr.on("data", (d) => {
    log += d;
    if (log.length > 200_000) log = log.slice(-100_000);
  });
  return new Promise((resolve, reject) => {
    child.on("exit", (code) => reject(new Error(`nex node up exited (${code}):\n${out}\n${log.slice(-4000)}`)));
    child.stdout.on("data", (d) => {
      out += d;
      const broker = /broker:\s+(nats:\/\/\S+)/.exec(out)?.[1];
      const ws = /websocket:\s+(wss?:\/\/\S+)/.exec(out)?.[1];
      const web = /web:\s+(https?:\/\/\S+)/.exec(out)?.[1];
      const nodeId = /node id:\s+(\S+)/.exec(out)?.[1];
      if (broker && ws && web && nodeId) resolve({ child, broker, ws, web, nodeId, log: () => log });
    });
  });
}

async function deploy(o, env, server, page) {
  const s = ["-s", server];
  const secrets = o.secrets;
  const built = spawn(process.execPath, [path.join(here, "build.mjs")], { cwd: root, stdio: ["ignore", "ignore", "inherit"] });
  const [code] = await Promise.all([new Promise((r) => built.on("close", r)), buildWeb()]);
  if (code !== 0) throw new Error("examples/poker/build.mjs failed");

  const ids = {};
  ids.user = await nex(["run", path.join(here, "dist/user.js"), "--service", ...s], env);
  ids.bank = await nex(["run", path.join(here, "dist/bank.js"), "--service", "--env", `TABLE_KEY=${secrets.table_key}`, "--trigger-timeout", "60s", ...s], env);
  const lobbyEnv = ["--env", `TABLE_KEY=${secrets.table_key}`, ...(o.handPauseMs ? ["--env", `HAND_PAUSE_MS=${o.handPauseMs}`] : [])];
  ids.lobby = await nex(["run", path.join(here, "dist/lobby.js"), "--service", "--name", "lobby", ...lobbyEnv,
    "--allow-deploy", path.join(here, "dist/table.js"), "--max-children", "20", "--trigger-timeout", "120s", ...s], env);

  // The site: a copy of web/ plus config.json, in the demo's home (the source folder stays free of credentials).
  const site = path.join(o.home, "site");
  rmSync(site, { recursive: true, force: true });
  mkdirSync(site, { recursive: true });
  for (const f of ["index.html", "style.css", "app.js", "nats.js"]) cpSync(path.join(here, "web", f), path.join(site, f));
  writeFileSync(path.join(site, "config.json"), JSON.stringify(page, null, 2) + "\n");
  ids.site = await nex(["run", "--type", "static", site, "--name", "poker-web", "--http-path", "/poker", ...s], env);
  return ids;
}

async function main() {
  const o = parseArgs(process.argv.slice(2));
  const keepHome = o.home !== undefined;
  o.home ??= mkdtempSync(path.join(os.tmpdir(), "nex-poker-demo-"));
  mkdirSync(o.home, { recursive: true, mode: 0o700 });
  o.secrets = loadSecrets(o.home);

  if (!o.node) {
    const server = process.env.NATS_URL;
    if (!server) usage("--no-node deploys onto the nodes behind NATS_URL: set it");
    if (!o.wsUrl || !o.webUser) usage("--no-node needs the page's --ws-url and --web-user/--web-password (a restricted user of that broker)");
    const ids = await deploy(o, { ...process.env }, server, { ws_url: o.wsUrl, user: o.webUser, password: o.webPassword ?? "" });
    console.log(`poker: deployed user ${ids.user}, bank ${ids.bank}, lobby ${ids.lobby}, site ${ids.site}`);
    console.log("open /poker/ on a node's web gateway (nex node up --web-port)");
    if (!keepHome) rmSync(o.home, { recursive: true, force: true });
    return;
  }

  const confFile = path.join(o.home, "broker.conf");
  writeFileSync(confFile, brokerConfig(o.secrets), { mode: 0o600 });
  const env = { ...process.env, NEX_HOME: o.home };
  delete env.NATS_URL;
  const node = await startNode(o, env, confFile, o.secrets);
  let stopping = false;
  const stop = async (code) => {
    if (stopping) return;
    stopping = true;
    node.child.removeAllListeners("exit");
    const gone = new Promise((r) => (node.child.exitCode !== null ? r() : node.child.once("exit", r)));
    node.child.kill("SIGINT");
    const timer = setTimeout(() => node.child.kill("SIGKILL"), 10_000);
    await gone;
    clearTimeout(timer);
    if (!keepHome) rmSync(o.home, { recursive: true, force: true });
    process.exit(code);
  };
  process.on("SIGINT", () => void stop(0));
  process.on("SIGTERM", () => void stop(0));
  node.child.on("exit", (code) => {
    if (stopping) return;
    console.error(`poker: the node exited (${code}):\n${node.log().slice(-4000)}`);
    process.exit(1);
  });

  try {
    const ids = await deploy(o, env, node.broker, { ws_url: node.ws, user: "poker-web", password: o.secrets.web_password });
    console.log(`poker: node ${node.nodeId}`);
    console.log(`poker: broker ${node.broker} (admin: NEX_HOME=${o.home} npx nex ...), websocket ${node.ws}`);
    console.log(`poker: workloads user ${ids.user}, bank ${ids.bank}, lobby ${ids.lobby}, site ${ids.site}`);
    console.log(`poker: open ${node.web}/poker/   (one player per browser tab; Ctrl-C stops everything)`);
  } catch (err) {
    console.error(`poker: ${err.message}`);
    await stop(1);
  }
}

await main();
