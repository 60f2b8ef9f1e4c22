/** The reply policy: which reply subjects a service answers. */

/**
 * Where a service accepts to send replies. NATS lets a caller choose the
 * reply subject, so without a policy a caller could make the service publish
 * its reply where the caller itself may not (or onto another endpoint,
 * running it). Always refused: no reply subject, a wildcard token, one of the
 * service's own endpoint subjects or a subject under one, and `$SRV.`, `$JS.`,
 * `$KV.`, `$O.`, `$SYS.`. A refused request is dropped without running the
 * handler, counted as an error and logged. Discovery requests (`$SRV.PING`,
 * `INFO`, `STATS`) follow the same policy: a refused one is dropped and
 * logged, so a caller cannot aim the service's discovery replies at, say,
 * the JetStream API.
 */
export interface ReplyPolicy {
  /** When set, a reply subject must start with one of these (e.g. `["_INBOX."]`). */
  allowPrefixes?: readonly string[];
  /** Reply subjects matching one of these NATS patterns (`*`, `>` wildcards) are refused. */
  deny?: readonly string[];
}

/** Reply subjects never allowed, whatever the policy. */
const RESERVED_REPLY_PREFIXES = ["$SRV.", "$JS.", "$KV.", "$O.", "$SYS."];

/** Whether `subject` matches the NATS pattern `pattern` (`*` one token, `>` one or more trailing tokens). */
export function subjectMatches(pattern: string, subject: string): boolean {
  const want = pattern.split(".");
  const have = subject.split(".");
  for (let i = 0; i < want.length; i += 1) {
    if (want[i] === ">") {
      return have.length > i;
    }
    if (i >= have.length || (want[i] !== "*" && want[i] !== have[i])) {
      return false;
    }
  }
  return want.length === have.length;
}

const DOT = 0x2e;
const WHITESPACE = /\s/;

/**
 * Whether `subject` is literal: no empty token, no `*` or `>` token, no
 * whitespace. One pass without splitting: every request's reply subject is
 * checked.
 */
function literalSubject(subject: string): boolean {
  let tokenStart = 0;
  for (let i = 0; i <= subject.length; i++) {
    const code = i === subject.length ? DOT : subject.charCodeAt(i);
    if (code === DOT) {
      const length = i - tokenStart;
      if (length === 0) {
        return false;
      }
      if (length === 1) {
        const only = subject.charCodeAt(tokenStart);
        if (only === 0x2a || only === 0x3e) {
          return false;
        }
      }
      tokenStart = i + 1;
    } else if (code <= 0x20 || code > 0x7e) {
      // Rare: a control character, a space or anything outside ASCII; `\s` decides (as before) for those.
      if (WHITESPACE.test(subject[i] ?? "")) {
        return false;
      }
    }
  }
  return true;
}

/** Why `reply` may not receive a reply of a service with endpoint subjects `own`, or `undefined` if it may. */
export function refusedReply(reply: string | undefined, own: readonly string[], policy: ReplyPolicy = {}): string | undefined {
  if (reply === undefined || reply === "") {
    return "no reply subject";
  }
  if (!literalSubject(reply)) {
    return `reply subject ${JSON.stringify(reply)} is not a valid literal subject`;
  }
  for (const prefix of RESERVED_REPLY_PREFIXES) {
    if (reply.startsWith(prefix)) {
      return `reply subject ${JSON.stringify(reply)} is reserved`;
    }
  }
  for (const subject of own) {
    if (reply.startsWith(subject) && (reply.length === subject.length || reply.charCodeAt(subject.length) === DOT)) {
      return `reply subject ${JSON.stringify(reply)} is one of the service's endpoints`;
    }
  }
  if (policy.allowPrefixes !== undefined && !policy.allowPrefixes.some((prefix) => reply.startsWith(prefix))) {
    return `reply subject ${JSON.stringify(reply)} has no allowed prefix`;
  }
  if (policy.deny?.some((pattern) => subjectMatches(pattern, reply))) {
    return `reply subject ${JSON.stringify(reply)} is denied`;
  }
  return undefined;
}
