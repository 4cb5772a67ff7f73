/*
 * greeter: a tiny NATS service for an OCI workload, built as one static binary (no libc in the image).
 *
 * It reads the connection the node injects (NEX_NATS_URL, e.g. nats://user:pass@127.0.0.1:4222),
 * subscribes to its trigger subjects (NEX_TRIGGER_SUBJECTS, comma-separated, or the arguments) in the queue
 * group NEX_QUEUE_GROUP (namespace and workload name), and answers every request with "<GREETING>, <payload>". It speaks the
 * NATS text protocol itself: CONNECT, SUB, MSG -> PUB to the reply subject, PING -> PONG.
 *
 *   gcc -static -O2 -o greeter greeter.c
 *
 * Exits 0 on SIGTERM (as PID 1 a process gets no default signal handling, so it installs one), and
 * non-zero when the connection breaks, so a restart policy can bring it back.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static volatile sig_atomic_t stopping = 0;
static int sock = -1;

static void on_term(int sig) {
  (void)sig;
  stopping = 1;
}

__attribute__((noreturn)) static void fail(const char *what) {
  fprintf(stderr, "greeter: %s\n", what);
  exit(1);
}

static void send_all(const char *data, size_t len) {
  while (len > 0) {
    ssize_t n = write(sock, data, len);
    if (n < 0 && errno == EINTR && !stopping) continue;
    if (n <= 0) fail("connection lost while writing");
    data += n;
    len -= (size_t)n;
  }
}

/* A growing input buffer: the protocol is lines, and a MSG line is followed by its payload bytes. */
static char *buf;
static size_t buf_cap, buf_len, buf_pos;

/* Reads more bytes; returns 0 when asked to stop. */
static int fill(void) {
  if (buf_pos > 0) {
    memmove(buf, buf + buf_pos, buf_len - buf_pos);
    buf_len -= buf_pos;
    buf_pos = 0;
  }
  if (buf_len == buf_cap) {
    buf_cap = buf_cap ? buf_cap * 2 : 65536;
    buf = realloc(buf, buf_cap);
    if (!buf) fail("out of memory");
  }
  for (;;) {
    ssize_t n = read(sock, buf + buf_len, buf_cap - buf_len);
    if (n > 0) {
      buf_len += (size_t)n;
      return 1;
    }
    if (n < 0 && errno == EINTR) {
      if (stopping) return 0;
      continue;
    }
    fail(n == 0 ? "server closed the connection" : "connection lost while reading");
  }
}

/* The next protocol line without its CRLF (NUL-terminated in place), or NULL when stopping. */
static char *next_line(void) {
  for (;;) {
    char *start = buf + buf_pos;
    char *end = memmem(start, buf_len - buf_pos, "\r\n", 2);
    if (end) {
      *end = '\0';
      buf_pos = (size_t)(end + 2 - buf);
      return start;
    }
    if (!fill()) return NULL;
  }
}

/* The next n payload bytes and their CRLF, or NULL when stopping. */
static char *next_bytes(size_t n) {
  while (buf_len - buf_pos < n + 2)
    if (!fill()) return NULL;
  char *start = buf + buf_pos;
  buf_pos += n + 2;
  return start;
}

/* In place: "%40" -> "@" (URLs carry credentials percent-encoded). */
static char *percent_decode(char *s) {
  char *out = s;
  for (char *in = s; *in; in++) {
    unsigned int byte;
    if (in[0] == '%' && in[1] && in[2] && sscanf(in + 1, "%2x", &byte) == 1) {
      *out++ = (char)byte;
      in += 2;
    } else {
      *out++ = *in;
    }
  }
  *out = '\0';
  return s;
}

/* nats://[user:pass@|token@]host:port[,more] -> the parts of the first server. */
static void parse_url(char *url, char **user, char **pass, char **token, char **host, char **port) {
  char *comma = strchr(url, ',');
  if (comma) *comma = '\0';
  char *p = strstr(url, "://");
  p = p ? p + 3 : url;
  char *at = strrchr(p, '@');
  if (at) {
    *at = '\0';
    char *colon = strchr(p, ':');
    if (colon) {
      *colon = '\0';
      *user = percent_decode(p);
      *pass = percent_decode(colon + 1);
    } else {
      *token = percent_decode(p);
    }
    p = at + 1;
  }
  *host = p;
  char *colon = strrchr(p, ':');
  if (colon) {
    *colon = '\0';
    *port = colon + 1;
  }
  char *slash = strchr(*port, '/');
  if (slash) *slash = '\0';
}

/* JSON string value with the characters a URL part may carry escaped. */
static void json_field(char *out, size_t cap, const char *key, const char *value) {
  size_t n = (size_t)snprintf(out, cap, ",\"%s\":\"", key);
  for (const char *c = value; *c && n + 8 < cap; c++) {
    if (*c == '"' || *c == '\\') out[n++] = '\\';
    out[n++] = *c;
  }
  snprintf(out + n, cap - n, "\"");
}

static void connect_to(char *url, const char *name) {
  char *user = NULL, *pass = NULL, *token = NULL, *host = "127.0.0.1", *port = "4222";
  parse_url(url, &user, &pass, &token, &host, &port);
  /* Literal addresses only: a static binary has no name resolver (host networking makes loopback work). */
  if (strcmp(host, "localhost") == 0) host = "127.0.0.1";
  if (host[0] == '[') {
    host++;
    host[strcspn(host, "]")] = '\0';
  }
  struct sockaddr_in v4 = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(port))};
  struct sockaddr_in6 v6 = {.sin6_family = AF_INET6, .sin6_port = htons((uint16_t)atoi(port))};
  struct sockaddr *addr;
  socklen_t addr_len;
  if (inet_pton(AF_INET, host, &v4.sin_addr) == 1) {
    addr = (struct sockaddr *)&v4;
    addr_len = sizeof v4;
  } else if (inet_pton(AF_INET6, host, &v6.sin6_addr) == 1) {
    addr = (struct sockaddr *)&v6;
    addr_len = sizeof v6;
  } else {
    fail("the NATS host must be an IP address");
  }
  sock = socket(addr->sa_family, SOCK_STREAM, 0);
  if (sock >= 0 && connect(sock, addr, addr_len) != 0) {
    close(sock);
    sock = -1;
  }
  if (sock < 0) fail("cannot connect to NATS");

  char *info = next_line();
  if (!info || strncmp(info, "INFO ", 5) != 0) fail("the server did not send INFO");
  char auth[1024] = "";
  if (user) {
    json_field(auth, sizeof auth, "user", user);
    json_field(auth + strlen(auth), sizeof auth - strlen(auth), "pass", pass);
  }
  if (token) json_field(auth, sizeof auth, "auth_token", token);
  char cmd[2048];
  int n = snprintf(cmd, sizeof cmd,
                   "CONNECT {\"verbose\":false,\"pedantic\":false,\"lang\":\"c\",\"version\":\"1.0\",\"protocol\":1,"
                   "\"name\":\"%s\"%s}\r\nPING\r\n",
                   name, auth);
  send_all(cmd, (size_t)n);
  char *reply = next_line();
  if (!reply || strcmp(reply, "PONG") != 0) {
    fprintf(stderr, "greeter: connect refused: %s\n", reply ? reply : "(stopped)");
    exit(1);
  }
}

int main(int argc, char **argv) {
  setvbuf(stdout, NULL, _IOLBF, 0); /* one log line per write, also when stdout is a pipe */
  struct sigaction sa = {.sa_handler = on_term};
  sigaction(SIGTERM, &sa, NULL); /* no SA_RESTART: a blocked read returns EINTR */
  sigaction(SIGINT, &sa, NULL);

  char *url = getenv("NEX_NATS_URL");
  const char *greeting = getenv("GREETING") ? getenv("GREETING") : "hello";
  const char *group = getenv("NEX_QUEUE_GROUP") ? getenv("NEX_QUEUE_GROUP") : "greeter";
  if (!url) fail("NEX_NATS_URL is not set");
  connect_to(url, group);

  char cmd[1024];
  int subs = 0;
  char *list = argc > 1 ? NULL : getenv("NEX_TRIGGER_SUBJECTS");
  for (int i = 1; i < argc; i++) {
    int n = snprintf(cmd, sizeof cmd, "SUB %s %s %d\r\n", argv[i], group, ++subs);
    send_all(cmd, (size_t)n);
  }
  for (char *save = NULL, *s = list ? strtok_r(list, ",", &save) : NULL; s; s = strtok_r(NULL, ",", &save)) {
    int n = snprintf(cmd, sizeof cmd, "SUB %s %s %d\r\n", s, group, ++subs);
    send_all(cmd, (size_t)n);
  }
  if (subs == 0) fail("no subjects: set NEX_TRIGGER_SUBJECTS or pass them as arguments");
  printf("greeter ready: %d subject(s), greeting \"%s\"\n", subs, greeting);

  char *line;
  while ((line = next_line()) != NULL) {
    if (strcmp(line, "PING") == 0) {
      send_all("PONG\r\n", 6);
    } else if (strncmp(line, "MSG ", 4) == 0) {
      /* MSG <subject> <sid> [reply-to] <#bytes> */
      char *field[5];
      int count = 0;
      for (char *save = NULL, *t = strtok_r(line + 4, " ", &save); t && count < 5; t = strtok_r(NULL, " ", &save)) field[count++] = t;
      if (count < 3) fail("malformed MSG line");
      char subject[256];
      snprintf(subject, sizeof subject, "%s", field[0]);
      char reply_to[256] = "";
      if (count == 4) snprintf(reply_to, sizeof reply_to, "%s", field[2]);
      size_t size = strtoul(field[count - 1], NULL, 10);
      char *payload = next_bytes(size);
      if (!payload) break;
      printf("greet on %s: %zu bytes\n", subject, size);
      if (reply_to[0] == '\0') continue;
      size_t answer = strlen(greeting) + 2 + size;
      char head[600];
      int hn = snprintf(head, sizeof head, "PUB %s %zu\r\n", reply_to, answer);
      send_all(head, (size_t)hn);
      send_all(greeting, strlen(greeting));
      send_all(", ", 2);
      send_all(payload, size);
      send_all("\r\n", 2);
    } else if (strncmp(line, "-ERR", 4) == 0) {
      fprintf(stderr, "greeter: server error: %s\n", line);
    }
  }
  printf("greeter stopping\n");
  return 0;
}
