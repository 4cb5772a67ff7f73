// The Origins a browser may open the WebSocket listener from (nats-server's allowed_origins). One parser
// serves the --ws-allowed-origin flag, the config file and the listener, so a value is judged the same
// way wherever it is given, and a bad one is refused where it is written rather than at start-up.

/** An allowed origin, as the listener compares it with a request's Origin header. */
export interface AllowedOrigin {
  /** With the colon, as URL.protocol: "https:". */
  scheme: string;
  host: string;
  port: string;
}

/**
 * An origin as a browser sends it, scheme://host[:port] (a trailing "/" is tolerated); throws for
 * anything else, since a path, query, user or missing scheme could never match an Origin header.
 */
export function parseAllowedOrigin(origin: string): AllowedOrigin {
  const url = URL.canParse(origin) ? new URL(origin) : null;
  const bare =
    url !== null &&
    /^[a-z][a-z0-9+.-]*:\/\//i.test(origin) &&
    url.host !== "" &&
    (url.pathname === "" || url.pathname === "/") &&
    url.search === "" &&
    url.hash === "" &&
    url.username === "" &&
    url.password === "";
  if (!bare) throw new Error(`expected scheme://host[:port], got ${JSON.stringify(origin)}`);
  const { host, port } = hostAndPort(url.protocol === "https:", url.host);
  return { scheme: url.protocol, host, port };
}

/** Host (lower case) and port of "host[:port]", the port defaulting by scheme (nats-server's wsGetHostAndPort). */
export function hostAndPort(secure: boolean, hostPort: string): { host: string; port: string } {
  const m = /^(\[[^\]]*\]|[^:]*)(?::(\d*))?$/.exec(hostPort);
  const host = (m?.[1] ?? hostPort).toLowerCase();
  const port = m?.[2] || (secure ? "443" : "80");
  return { host, port };
}
