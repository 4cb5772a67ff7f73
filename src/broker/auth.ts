// Who may connect, as nats-server 2.9 decides it: a shared token, users with passwords, or NKey users
// who sign the nonce from INFO. The users can change while the broker runs (the node mints one per
// workload); removing one closes its connections, as a nats-server config reload does.

import { createPublicKey, randomBytes, timingSafeEqual, verify } from "node:crypto";
import { createRequire } from "node:module";
import { CompiledPermissions, type UserPermissions } from "./permissions.js";

export interface PasswordUser {
  user: string;
  password: string;
  permissions?: UserPermissions;
}

export interface NkeyUser {
  /** The user's public NKey (starts with U). */
  nkey: string;
  permissions?: UserPermissions;
}

export type BrokerUserSpec = PasswordUser | NkeyUser;

/** A user the broker knows, with permissions compiled (null: everything allowed). */
export interface AuthenticatedUser {
  /** The user name, or the public NKey. */
  readonly name: string;
  readonly permissions: CompiledPermissions | null;
  readonly spec: BrokerUserSpec;
}

/** ED25519's SubjectPublicKeyInfo header; the 32 raw key bytes follow it. */
const ED25519_SPKI_PREFIX = Buffer.from("302a300506032b6570032100", "hex");

function isNkeyUser(spec: BrokerUserSpec): spec is NkeyUser {
  return (spec as NkeyUser).nkey !== undefined;
}

function userName(spec: BrokerUserSpec): string {
  return isNkeyUser(spec) ? spec.nkey : spec.user;
}

function sameSecret(given: string, expected: string): boolean {
  const a = Buffer.from(given);
  const b = Buffer.from(expected);
  return a.length === b.length && timingSafeEqual(a, b);
}

/** Whether `nkey` is a user's public NKey (prefix U, valid base32 and checksum). */
export function isUserNkey(nkey: string): boolean {
  try {
    nkeyPublicKey(nkey);
    return true;
  } catch {
    return false;
  }
}

type NkeyCodec = typeof import("@nats-io/nkeys/lib/codec.js").Codec;
let codec: NkeyCodec | undefined;
/** Loaded on first use, so a broker without NKey users does not pay for it at start-up. */
function nkeyCodec(): NkeyCodec {
  // The package's root exports no decoder for public keys; its codec module does (checks prefix and CRC).
  codec ??= (createRequire(import.meta.url)("@nats-io/nkeys/lib/codec.js") as { Codec: NkeyCodec }).Codec;
  return codec;
}

/** The prefix byte of user NKeys (nkeys' Prefix.User, "U" in base32). */
const USER_PREFIX = 20 << 3;

function nkeyPublicKey(nkey: string): Buffer {
  try {
    return Buffer.from(nkeyCodec().decode(USER_PREFIX, new TextEncoder().encode(nkey)));
  } catch {
    throw new Error(`not a valid public nkey for a user: ${JSON.stringify(nkey)}`);
  }
}

/** The longest text a 64-byte signature encodes to (standard base64 with padding). */
const MAX_SIG_TEXT = 88;

/** nats-server accepts the signature in base64url without padding, or in standard base64. */
function verifyNonce(nkey: string, nonce: string, sig: string): boolean {
  if (sig.length > MAX_SIG_TEXT) return false; // CONNECT may be 1 MiB: do not decode what cannot be a signature
  const signature = Buffer.from(sig, /[+/=]/.test(sig) ? "base64" : "base64url");
  if (signature.length !== 64) return false;
  const key = createPublicKey({ key: Buffer.concat([ED25519_SPKI_PREFIX, nkeyPublicKey(nkey)]), format: "der", type: "spki" });
  return verify(null, Buffer.from(nonce, "latin1"), key, signature);
}

export class Authenticator {
  private readonly byName = new Map<string, AuthenticatedUser>();
  private readonly byNkey = new Map<string, AuthenticatedUser>();
  /** `default_permissions`, compiled once (so checked at start) and shared by the users without their own. */
  private readonly defaultPermissions: CompiledPermissions | null;

  constructor(
    readonly token: string | undefined,
    users: BrokerUserSpec[],
    defaultPermissions: UserPermissions | undefined,
  ) {
    this.defaultPermissions = defaultPermissions ? new CompiledPermissions(defaultPermissions) : null;
    for (const u of users) this.add(u);
  }

  /** Anyone connecting must authenticate. */
  get required(): boolean {
    return this.token !== undefined || this.byName.size > 0 || this.byNkey.size > 0;
  }

  /** INFO carries a nonce to sign only when NKey users exist (nats-server's nonceRequired). */
  get nonceRequired(): boolean {
    return this.byNkey.size > 0;
  }

  newNonce(): string {
    return randomBytes(11).toString("base64url");
  }

  add(spec: BrokerUserSpec): AuthenticatedUser {
    const nkey = isNkeyUser(spec);
    if (nkey) nkeyPublicKey(spec.nkey);
    else if (typeof spec.user !== "string" || spec.user === "" || typeof spec.password !== "string") throw new Error("a user needs a name and a password");
    if (!nkey && spec.password.startsWith("$2")) throw new Error(`user ${JSON.stringify(spec.user)}: bcrypt passwords are not supported by the bundled broker`);
    if (this.token !== undefined) throw new Error("a token and users cannot be combined (as in nats-server)");
    const name = userName(spec);
    // One namespace for both kinds: remove(name) must not find a password user named like an NKey user.
    if (this.byName.has(name) || this.byNkey.has(name)) throw new Error(`user ${JSON.stringify(name)} already exists`);
    const index = nkey ? this.byNkey : this.byName;
    const permissions = spec.permissions ? new CompiledPermissions(spec.permissions) : this.defaultPermissions;
    const user: AuthenticatedUser = { name, permissions, spec };
    index.set(name, user);
    return user;
  }

  remove(name: string): AuthenticatedUser | undefined {
    const user = this.byName.get(name) ?? this.byNkey.get(name);
    if (user !== undefined) (isNkeyUser(user.spec) ? this.byNkey : this.byName).delete(name);
    return user;
  }

  list(): BrokerUserSpec[] {
    return [...this.byName.values(), ...this.byNkey.values()].map((u) => u.spec);
  }

  /**
   * The user a CONNECT authenticates as, "token" for the token, or null (refused). The order is
   * nats-server's: an NKey when NKey users exist, then a user name, then the token.
   */
  authenticate(connect: Record<string, unknown>, nonce: string | undefined): AuthenticatedUser | "token" | null {
    const nkey = connect.nkey;
    if (this.byNkey.size > 0 && typeof nkey === "string" && nkey !== "") {
      const user = this.byNkey.get(nkey);
      const sig = connect.sig;
      if (user === undefined || nonce === undefined || typeof sig !== "string" || sig === "") return null;
      try {
        return verifyNonce(nkey, nonce, sig) ? user : null;
      } catch {
        return null;
      }
    }
    const name = connect.user;
    if (this.byName.size > 0 && typeof name === "string" && name !== "") {
      const user = this.byName.get(name);
      if (user === undefined) return null;
      const pass = connect.pass;
      return typeof pass === "string" && sameSecret(pass, (user.spec as PasswordUser).password) ? user : null;
    }
    if (this.token !== undefined && typeof connect.auth_token === "string" && sameSecret(connect.auth_token, this.token)) return "token";
    return null;
  }
}
