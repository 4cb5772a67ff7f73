// Go's %q quoting, for the -ERR texts that nats-server writes with fmt (permission violations).

/** A subject in double quotes as Go's %q writes it (the -ERR texts come from nats-server's fmt calls). */
export function goQuote(text: string): string {
  let out = '"';
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x22 || c === 0x5c) out += "\\" + text[i];
    else if (c === 0x0a) out += "\\n";
    else if (c === 0x0d) out += "\\r";
    else if (c === 0x09) out += "\\t";
    else if (c < 0x20 || c === 0x7f) out += "\\x" + c.toString(16).padStart(2, "0");
    else out += text[i];
  }
  return out + '"';
}
