// Static assets (`nex run --type static ./public --http-path /app`): the manifest of a deploy, its bounds,
// and content types by extension. The CLI uploads each file to the NEX_ARTIFACTS object store under its
// SHA-256 (so a redeploy uploads only what changed) and the manifest (JSON, also content-addressed); the
// deploy request names the manifest as its artifact. The node checks it, and records it with the route
// (NEX_HTTP_ROUTES), so every node's gateway serves the files from the object store (README, "HTTP
// triggers", "Static assets").

import { z } from "zod";

/** Files in one static deploy at most. */
export const STATIC_MAX_FILES = 1000;
/** Bytes of all the files of one static deploy at most. */
export const STATIC_MAX_TOTAL_BYTES = 64 * 1024 * 1024;
/** Bytes of one file at most. */
export const STATIC_MAX_FILE_BYTES = 16 * 1024 * 1024;
/** A manifest path's length at most. */
export const STATIC_MAX_PATH = 200;

const TYPES: Record<string, string> = {
  html: "text/html; charset=utf-8",
  htm: "text/html; charset=utf-8",
  css: "text/css; charset=utf-8",
  js: "text/javascript; charset=utf-8",
  mjs: "text/javascript; charset=utf-8",
  json: "application/json",
  map: "application/json",
  txt: "text/plain; charset=utf-8",
  md: "text/markdown; charset=utf-8",
  csv: "text/csv; charset=utf-8",
  xml: "application/xml",
  svg: "image/svg+xml",
  png: "image/png",
  jpg: "image/jpeg",
  jpeg: "image/jpeg",
  gif: "image/gif",
  webp: "image/webp",
  avif: "image/avif",
  ico: "image/x-icon",
  wasm: "application/wasm",
  woff: "font/woff",
  woff2: "font/woff2",
  ttf: "font/ttf",
  otf: "font/otf",
  pdf: "application/pdf",
  mp4: "video/mp4",
  webm: "video/webm",
  mp3: "audio/mpeg",
  wav: "audio/wav",
  webmanifest: "application/manifest+json",
};

/** The content type of a file name by its extension; application/octet-stream when unknown. */
export function contentTypeFor(name: string): string {
  const dot = name.lastIndexOf(".");
  const ext = dot === -1 ? "" : name.slice(dot + 1).toLowerCase();
  return TYPES[ext] ?? "application/octet-stream";
}

/** Worth gzipping: text, and the text-like application types. */
export function compressible(type: string): boolean {
  return /^text\/|^application\/(json|javascript|xml|wasm|manifest\+json)|^image\/svg\+xml/.test(type);
}

const SEGMENT = /^[A-Za-z0-9._~!$&'()+,;=@ -]+$/;

/** Why a manifest path (relative, '/'-separated, e.g. "css/site.css") is not acceptable, or undefined. */
export function staticPathProblem(p: string): string | undefined {
  if (p.length === 0 || p.length > STATIC_MAX_PATH) return `must be 1-${STATIC_MAX_PATH} characters`;
  const segments = p.split("/");
  if (segments.some((s) => s === "" || s === "." || s === "..")) return "may not be absolute, end with /, or have empty, . or .. segments";
  if (segments.some((s) => !SEGMENT.test(s))) return "may contain only letters, digits, spaces and - . _ ~ ! $ & ' ( ) + , ; = @ per segment";
  return undefined;
}

export const StaticFileSchema = z.strictObject({
  sha256: z.string().regex(/^[0-9a-f]{64}$/, "must be 64 lowercase hex digits"),
  size: z.number().int().min(0).max(STATIC_MAX_FILE_BYTES),
  type: z.string().min(1).max(128).regex(/^[\x21-\x7e][\x20-\x7e]*$/, "must be a content type"),
});
export type StaticFile = z.infer<typeof StaticFileSchema>;

export const StaticManifestSchema = z
  .strictObject({
    /** Path (relative to the route) → file. */
    files: z.record(z.string(), StaticFileSchema),
  })
  .superRefine((m, ctx) => {
    const paths = Object.keys(m.files);
    if (paths.length === 0) ctx.addIssue({ code: "custom", path: ["files"], message: "a static deploy needs at least one file" });
    if (paths.length > STATIC_MAX_FILES) ctx.addIssue({ code: "custom", path: ["files"], message: `${paths.length} files; a static deploy takes at most ${STATIC_MAX_FILES}` });
    let total = 0;
    for (const p of paths) {
      const problem = staticPathProblem(p);
      if (problem) ctx.addIssue({ code: "custom", path: ["files"], message: `path ${JSON.stringify(p)} ${problem}` });
      total += m.files[p].size;
    }
    if (total > STATIC_MAX_TOTAL_BYTES) ctx.addIssue({ code: "custom", path: ["files"], message: `${total} bytes in all; a static deploy takes at most ${STATIC_MAX_TOTAL_BYTES}` });
  });
export type StaticManifest = z.infer<typeof StaticManifestSchema>;
