//! Which reply subjects a service answers on.
//!
//! In NATS the caller chooses where a reply goes, and the service publishes
//! it with its own permissions. Unchecked, a caller could aim a reply at
//! another endpoint (which would then run) or at a subject it may not
//! publish to itself: a confused deputy. See `docs/PROTOCOL.md`, section 6.

/// Reply subject prefixes that belong to the NATS system, JetStream, KV and
/// object stores, and the Service API: never a reply destination.
pub const RESERVED_REPLY_PREFIXES: [&str; 5] = ["$SRV.", "$JS.", "$KV.", "$O.", "$SYS."];

/// The reply subjects a service accepts.
///
/// By default a request is refused (dropped without running its handler,
/// counted as an error in STATS, logged at warn) when its reply subject is
/// missing, holds a wildcard, a space or an empty token, equals or lies
/// under one of the service's own endpoint subjects, or starts with one of
/// [`RESERVED_REPLY_PREFIXES`]. Opt-in, [`ReplyPolicy::allow_prefix`] admits
/// only replies starting with one of the given prefixes, and
/// [`ReplyPolicy::deny`] refuses those matching a NATS pattern.
///
/// ```
/// use nats_micro_runtime::ReplyPolicy;
/// let policy = ReplyPolicy::default().allow_prefix("_INBOX.").deny("_INBOX.admin.>");
/// assert!(policy.refusal("_INBOX.abc.1", &[]).is_none());
/// assert!(policy.refusal("_INBOX.admin.x", &[]).is_some());
/// assert!(policy.refusal("orders.v1.create_order", &["orders.v1.create_order".into()]).is_some());
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplyPolicy {
    allow_prefixes: Vec<String>,
    deny: Vec<String>,
}

impl ReplyPolicy {
    /// Admits only reply subjects starting with `prefix` (or with another
    /// prefix added the same way), e.g. `_INBOX.`.
    pub fn allow_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.allow_prefixes.push(prefix.into());
        self
    }

    /// Refuses reply subjects matching `pattern` (NATS wildcards: `*` one
    /// token, `>` the rest).
    pub fn deny(mut self, pattern: impl Into<String>) -> Self {
        self.deny.push(pattern.into());
        self
    }

    /// Why a request whose reply subject is `reply` is refused by a service
    /// whose endpoint subjects are `own_subjects`, or `None` if it is served.
    pub fn refusal(&self, reply: &str, own_subjects: &[String]) -> Option<String> {
        if reply.is_empty() {
            return Some("no reply subject".to_owned());
        }
        if !super::valid_subject(reply) {
            return Some(format!("reply subject {reply:?} has a wildcard, a space or an empty token"));
        }
        if let Some(own) = own_subjects.iter().find(|own| under(reply, own)) {
            return Some(format!("reply subject {reply:?} lies under endpoint subject {own:?}"));
        }
        if let Some(reserved) = RESERVED_REPLY_PREFIXES.iter().find(|prefix| reply.starts_with(*prefix)) {
            return Some(format!("reply subject {reply:?} lies under {reserved:?}"));
        }
        if !self.allow_prefixes.is_empty() && !self.allow_prefixes.iter().any(|prefix| reply.starts_with(prefix.as_str())) {
            return Some(format!("reply subject {reply:?} does not start with an allowed prefix"));
        }
        if let Some(pattern) = self.deny.iter().find(|pattern| subject_matches(pattern, reply)) {
            return Some(format!("reply subject {reply:?} matches denied pattern {pattern:?}"));
        }
        None
    }
}

/// A service's [`ReplyPolicy`] bound to its own endpoint subjects: the one
/// check every endpoint and the discovery subjects apply to a request.
#[derive(Debug)]
pub(crate) struct ReplyCheck {
    policy: ReplyPolicy,
    own_subjects: Vec<String>,
}

impl ReplyCheck {
    pub(crate) fn new(policy: ReplyPolicy, own_subjects: Vec<String>) -> Self {
        ReplyCheck { policy, own_subjects }
    }

    /// Why a request with reply subject `reply` (none: refused) is refused, or `None`.
    pub(crate) fn refusal(&self, reply: Option<&async_nats::Subject>) -> Option<String> {
        self.policy.refusal(reply.map_or("", |subject| subject.as_str()), &self.own_subjects)
    }
}

/// Whether `subject` equals `parent` or lies below it.
fn under(subject: &str, parent: &str) -> bool {
    subject.strip_prefix(parent).is_some_and(|rest| rest.is_empty() || rest.starts_with('.'))
}

/// Whether `subject` matches the NATS `pattern` (`*` one token, `>` one or more).
///
fn subject_matches(pattern: &str, subject: &str) -> bool {
    let mut tokens = subject.split('.');
    for wanted in pattern.split('.') {
        if wanted == ">" {
            return tokens.next().is_some();
        }
        match tokens.next() {
            Some(token) if wanted == "*" || wanted == token => {}
            _ => return false,
        }
    }
    tokens.next().is_none()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_refuses_what_the_protocol_lists() {
        let own = ["orders.v1.create_order".to_owned(), "orders.v1.get_order".to_owned()];
        let policy = ReplyPolicy::default();
        for refused in [
            "",
            "_INBOX.*",
            "_INBOX.>",
            "a..b",
            "a b",
            "orders.v1.create_order",
            "orders.v1.get_order.x",
            "$SRV.PING",
            "$JS.API.STREAM.DELETE.x",
            "$KV.bucket.key",
            "$O.store.x",
            "$SYS.REQ.SERVER.PING",
        ] {
            assert!(policy.refusal(refused, &own).is_some(), "{refused:?} must be refused");
        }
        for served in ["_INBOX.abc.1", "orders.v1.create_order_reply", "my.inbox.42"] {
            assert_eq!(policy.refusal(served, &own), None, "{served:?} must be served");
        }
    }

    #[test]
    fn opt_in_prefixes_and_patterns() {
        let policy = ReplyPolicy::default().allow_prefix("_INBOX.").allow_prefix("app.inbox.").deny("_INBOX.evil.>");
        assert_eq!(policy.refusal("_INBOX.x", &[]), None);
        assert_eq!(policy.refusal("app.inbox.y", &[]), None);
        assert!(policy.refusal("admin.shutdown", &[]).is_some());
        assert!(policy.refusal("_INBOX.evil.z", &[]).is_some());
    }

    #[test]
    fn patterns_match_as_nats_does() {
        assert!(subject_matches("a.b", "a.b"));
        assert!(!subject_matches("a.b", "a.b.c"));
        assert!(subject_matches("a.*", "a.b"));
        assert!(!subject_matches("a.*", "a"));
        assert!(subject_matches(">", "a"));
        assert!(!subject_matches("a.>", "a"));
    }
}
