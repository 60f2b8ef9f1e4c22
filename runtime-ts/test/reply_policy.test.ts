/**
 * Reply subjects (PROTOCOL.md section 6) and denied subscriptions (section
 * 7) on real nats-servers: what the policy always refuses, its opt-in
 * prefixes and deny patterns, a reply-to aimed at another endpoint that must
 * not run it, and a service whose subscriptions the server's permissions
 * refuse, which must fail to start rather than report ready.
 */

import assert from "node:assert/strict";
import { test } from "node:test";

import type { NatsConnection } from "@nats-io/nats-core";

import { Client, hasCode, NatsMicroError, refusedReply, Service, type ServiceOptions, subjectMatches } from "../src/index.js";
import { ECHO_SUBJECT, HANG_SUBJECT, Inbox, logSink, NatsServer, RawClient, SPEC, sleep, stringValue, within } from "./harness.js";

test("the policy refuses what it documents, by default and opt-in", () => {
  const own = [ECHO_SUBJECT, HANG_SUBJECT];
  const refused = [
    undefined,
    "",
    "foo.*",
    "foo.>",
    "*",
    ">",
    "a b",
    "a..b",
    ".a",
    ECHO_SUBJECT,
    `${ECHO_SUBJECT}.x`,
    HANG_SUBJECT,
    "$SRV.PING",
    "$SRV.INFO.x",
    "$JS.API.STREAM.DELETE.x",
    "$KV.bucket.key",
    "$O.store.x",
    "$SYS.REQ.SERVER.PING",
  ];
  for (const reply of refused) {
    assert.notEqual(refusedReply(reply, own), undefined, JSON.stringify(reply));
  }
  for (const reply of ["_INBOX.abc.1", "api.test.echos", "api.test", "replies.x", "admin", "admin.shutdown"]) {
    assert.equal(refusedReply(reply, own), undefined, reply);
  }
  const deny = { deny: ["admin.>", "*.secret"] };
  assert.notEqual(refusedReply("admin.shutdown", own, deny), undefined);
  assert.notEqual(refusedReply("x.secret", own, deny), undefined);
  assert.equal(refusedReply("admin", own, deny), undefined);
  const allow = { allowPrefixes: ["_INBOX.", "_MY_INBOX."] };
  assert.equal(refusedReply("_INBOX.x", own, allow), undefined);
  assert.equal(refusedReply("_MY_INBOX.x.y", own, allow), undefined);
  assert.notEqual(refusedReply("replies.x", own, allow), undefined);
  // Allowed prefixes never let the reserved subjects or the service's own through.
  assert.notEqual(refusedReply("$SRV.PING", own, { allowPrefixes: ["$SRV."] }), undefined);
  assert.notEqual(refusedReply(HANG_SUBJECT, own, { allowPrefixes: ["api."] }), undefined);
});

test("subject patterns match as NATS matches them", () => {
  assert.ok(subjectMatches("a.*", "a.b"));
  assert.ok(!subjectMatches("a.*", "a.b.c"));
  assert.ok(subjectMatches("a.>", "a.b.c"));
  assert.ok(!subjectMatches("a.>", "a"));
  assert.ok(subjectMatches("a.b", "a.b"));
  assert.ok(!subjectMatches("a.b", "a.b.c"));
  assert.ok(subjectMatches(">", "x"));
});

/** A server, a connection, a service with `options`, and counters of each handler's runs. */
async function live(options: ServiceOptions, config?: string): Promise<{
  server: NatsServer;
  nc: NatsConnection;
  service: Service;
  runs: { echo: number; hang: number };
  log: string[];
  close: () => Promise<void>;
}> {
  const server = await NatsServer.start(config);
  const nc = await server.connect(config === undefined ? {} : { user: "svc", pass: "svc" });
  const runs = { echo: 0, hang: 0 };
  const sink = logSink();
  const service = await Service.start(
    nc,
    SPEC,
    {
      echo: (request) => {
        runs.echo += 1;
        return { value: request.value };
      },
      hang: (request) => {
        runs.hang += 1;
        return { value: request.value };
      },
    },
    { logger: sink.logger, ...options },
  );
  return {
    server,
    nc,
    service,
    runs,
    log: sink.lines,
    close: async () => {
      await nc.close();
      server.stop();
    },
  };
}

test("a reply-to aimed at another endpoint does not run it, nor the endpoint called", async () => {
  const { server, nc, service, runs, log, close } = await live({});
  try {
    const raw = await RawClient.connect(server.port);
    const block = Buffer.from("NATS/1.0\r\nX-A: b\r\n\r\n");
    raw.hpub(ECHO_SUBJECT, HANG_SUBJECT, block, stringValue("aimed"));
    raw.hpub(ECHO_SUBJECT, `${HANG_SUBJECT}.deeper`, block, stringValue("aimed"));
    raw.hpub(ECHO_SUBJECT, "$SRV.PING", block, stringValue("aimed"));
    raw.hpub(ECHO_SUBJECT, "$JS.API.STREAM.DELETE.x", block, stringValue("aimed"));
    raw.hpub(ECHO_SUBJECT, "_INBOX.*", block, stringValue("wildcard"));
    raw.hpub(ECHO_SUBJECT, "_INBOX.>", block, stringValue("wildcard"));
    assert.ok(await raw.ping());
    assert.deepEqual(raw.errors, [], "the server forwards all of them");
    raw.close();
    // A request without a reply subject (a plain publish) is refused too.
    nc.publish(ECHO_SUBJECT, stringValue("no reply"));
    await nc.flush();
    await sleep(200);
    assert.deepEqual(runs, { echo: 0, hang: 0 });
    const echo = service.stats().endpoints.find((e) => e.name === "echo");
    assert.deepEqual([echo?.num_requests, echo?.num_errors], [7, 7]);
    assert.match(echo?.last_error ?? "", /^PERMISSION_DENIED:refused: no reply subject/);
    const refused = log.filter((line) => line.startsWith("reply_refused ")).map((line) => JSON.parse(line.slice("reply_refused ".length)) as Record<string, unknown>);
    assert.equal(refused.length, 7, log.join("\n"));
    assert.deepEqual(
      refused.map((e) => e["reply"]).sort(),
      ["", "$JS.API.STREAM.DELETE.x", "$SRV.PING", HANG_SUBJECT, `${HANG_SUBJECT}.deeper`, "_INBOX.*", "_INBOX.>"].sort(),
    );
    assert.ok(refused.every((e) => e["service"] === "TestService" && e["endpoint"] === "echo" && e["subject"] === ECHO_SUBJECT && e["level"] === "warn"));
    assert.equal(refused.filter((e) => String(e["reason"]).includes("is not a valid literal subject")).length, 2, log.join("\n"));
    // And it still serves ordinary callers.
    const client = new Client(nc, SPEC, NatsMicroError);
    assert.equal((await client.unary(SPEC.methods.echo, { value: "ok" }, { timeout: 1_000 })).value, "ok");
    assert.equal(runs.echo, 1);
    await within(2_000, service.stop(), "stop()");
  } finally {
    await close();
  }
});

test("opt-in: allowed prefixes and deny patterns keep replies off subjects the caller may not publish to", async () => {
  // The caller may publish requests and to its inboxes only; the service may publish anywhere (a confused deputy).
  const config = `authorization {
  users = [
    { user: svc, password: svc }
    { user: caller, password: caller, permissions: { publish: { allow: ["api.>", "_INBOX.>"] } } }
  ]
}
`;
  const { server, service, runs, close } = await live({ replyPolicy: { allowPrefixes: ["_INBOX.", "replies."], deny: ["replies.admin.>"] } }, config);
  try {
    const watcher = await server.connect({ user: "svc", pass: "svc" });
    const admin = new Inbox(watcher, "admin.>");
    const deniedReplies = new Inbox(watcher, "replies.admin.>");
    const allowed = new Inbox(watcher, "replies.ok");
    await watcher.flush();
    const raw = await RawClient.connect(server.port, { user: "caller", pass: "caller" });
    raw.hpub(ECHO_SUBJECT, "admin.shutdown", Buffer.from("NATS/1.0\r\n\r\n"), stringValue("deputy"));
    raw.hpub(ECHO_SUBJECT, "replies.admin.x", Buffer.from("NATS/1.0\r\n\r\n"), stringValue("deputy"));
    raw.hpub(ECHO_SUBJECT, "replies.ok", Buffer.from("NATS/1.0\r\n\r\n"), stringValue("fine"));
    assert.ok(await raw.ping());
    assert.deepEqual(raw.errors, [], "the caller's own publishes are allowed");
    await allowed.wait(1, 1_000);
    await sleep(100);
    assert.equal(admin.messages.length, 0, "nothing published to admin.shutdown");
    assert.equal(deniedReplies.messages.length, 0, "nothing published under a denied pattern");
    assert.equal(runs.echo, 1);
    raw.close();
    await watcher.close();
    await within(2_000, service.stop(), "stop()");
  } finally {
    await close();
  }
});

test("a service whose subscriptions the server refuses fails to start, naming them, and leaves nothing subscribed", async () => {
  const config = `authorization {
  users = [
    { user: svc, password: svc, permissions: { subscribe: { allow: ["api.test.echo", "$SRV.>", "_INBOX.>"] } } }
  ]
}
`;
  const server = await NatsServer.start(config);
  const nc = await server.connect({ user: "svc", pass: "svc" });
  try {
    const log = logSink();
    await assert.rejects(
      within(5_000, Service.start(nc, SPEC, { echo: (r) => ({ value: r.value }), hang: (r) => ({ value: r.value }) }, { logger: log.logger }), "start"),
      (err: unknown) => {
        assert.ok(hasCode(err, "PERMISSION_DENIED"), String(err));
        assert.match((err as Error).message, /cannot start/);
        assert.match((err as Error).message, /api\.test\.hang/);
        assert.doesNotMatch((err as Error).message, /api\.test\.echo:/);
        return true;
      },
    );
    // Nothing answers discovery or the endpoint that was allowed.
    await assert.rejects(nc.request("$SRV.PING.TestService", "", { timeout: 500 }));
    await assert.rejects(nc.request(ECHO_SUBJECT, stringValue("x"), { timeout: 500 }));
    assert.ok(!nc.isClosed());
  } finally {
    await nc.close();
    server.stop();
  }
});

test("discovery replies follow the policy too: a $SRV.PING cannot be aimed at the JetStream API or an endpoint", async () => {
  const { server, service, runs, log, close } = await live({ replyPolicy: { deny: ["admin.>"] } });
  try {
    const watcher = await server.connect();
    const reserved = new Inbox(watcher, "$JS.API.>");
    const admin = new Inbox(watcher, "admin.>");
    const answered = new Inbox(watcher, "_INBOX.discovery.>");
    await watcher.flush();
    const raw = await RawClient.connect(server.port);
    const empty = Buffer.from("NATS/1.0\r\n\r\n");
    for (const subject of ["$SRV.PING", "$SRV.INFO.TestService", `$SRV.STATS.TestService.${service.id}`]) {
      raw.hpub(subject, "$JS.API.STREAM.DELETE.orders", empty);
      raw.hpub(subject, HANG_SUBJECT, empty);
      raw.hpub(subject, "admin.shutdown", empty);
      raw.hpub(subject, `_INBOX.discovery.${subject}`, empty);
    }
    assert.ok(await raw.ping());
    raw.close();
    await answered.wait(3, 1_000);
    await sleep(100);
    assert.equal(reserved.messages.length, 0, "nothing published into the JetStream API");
    assert.equal(admin.messages.length, 0, "nothing published under a denied pattern");
    assert.deepEqual(runs, { echo: 0, hang: 0 });
    assert.equal(answered.messages.length, 3);
    assert.equal(log.filter((line) => line.startsWith("reply_refused ") && line.includes('"endpoint":""') && line.includes('"subject":"$SRV.PING"')).length, 3, log.join("\n"));
    await watcher.close();
    await within(2_000, service.stop(), "stop()");
  } finally {
    await close();
  }
});

test("a service denied its discovery subjects fails to start as well", async () => {
  const config = `authorization {
  users = [
    { user: svc, password: svc, permissions: { subscribe: { allow: ["api.test.>", "_INBOX.>"] } } }
  ]
}
`;
  const server = await NatsServer.start(config);
  const nc = await server.connect({ user: "svc", pass: "svc" });
  try {
    await assert.rejects(
      within(5_000, Service.start(nc, SPEC, { echo: (r) => ({ value: r.value }), hang: (r) => ({ value: r.value }) }, { logger: logSink().logger }), "start"),
      (err: unknown) => hasCode(err, "PERMISSION_DENIED") && /\$SRV\.PING/.test((err as Error).message),
    );
    await assert.rejects(nc.request(ECHO_SUBJECT, stringValue("x"), { timeout: 500 }));
  } finally {
    await nc.close();
    server.stop();
  }
});
