//! A request's limits, grouped by the key they count under: each group is one atomic step in
//! its store (one Redis script for all of a key's limits).

use std::sync::Arc;

use jtc_cache::RateRule;

use crate::{Limit, Limits};

/// The limits of a request, ready to count.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    pub(crate) limits: Limits,
    pub(crate) groups: Vec<Group>,
}

/// The limits counted under one key.
#[derive(Debug, Clone)]
pub(crate) struct Group {
    /// The key given with `Limit::by`, or `None` for the request's default key.
    pub(crate) key: Option<Arc<str>>,
    pub(crate) rules: Vec<RateRule>,
    /// Where each rule sits in the request's limits.
    pub(crate) positions: Vec<usize>,
}

impl Plan {
    pub(crate) fn new(limits: Limits) -> Self {
        let mut groups: Vec<Group> = Vec::new();
        for (position, limit) in limits.iter().enumerate() {
            let key = limit.shared_key();
            let rule = limit.rule();
            match groups.iter_mut().find(|g| g.key.as_ref() == key) {
                Some(group) => {
                    group.rules.push(rule);
                    group.positions.push(position);
                }
                None => groups.push(Group {
                    key: key.cloned(),
                    rules: vec![rule],
                    positions: vec![position],
                }),
            }
        }
        Self { limits, groups }
    }

    /// The limit at `position`.
    pub(crate) fn limit(&self, position: usize) -> Option<&Limit> {
        self.limits.as_slice().get(position)
    }

    /// The IETF `RateLimit-Policy` value: every limit by name, `"name";q=<max>;w=<secs>`.
    pub(crate) fn policy_header(&self) -> String {
        self.limits
            .iter()
            .map(|l| {
                format!(
                    "\"{}\";q={};w={}",
                    quoted(&l.policy_name()),
                    l.max(),
                    l.window().as_secs().max(1)
                )
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// A name as the inside of a structured-field string: printable ASCII, `"` and `\` escaped,
/// anything else replaced.
pub(crate) fn quoted(name: &str) -> String {
    name.chars()
        .map(|c| match c {
            '"' | '\\' => format!("\\{c}"),
            ' '..='~' => c.to_string(),
            _ => "_".to_owned(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_with_one_key_make_one_group() {
        let plan = Plan::new(Limits::from(vec![
            Limit::per_second(2),
            Limit::per_minute(5).by("user:1"),
            Limit::per_minute(30),
        ]));
        assert_eq!(plan.groups.len(), 2);
        assert_eq!(plan.groups[0].positions, [0, 2]);
        assert_eq!(plan.groups[1].key.as_deref(), Some("user:1"));
        assert_eq!(
            plan.policy_header(),
            "\"2-per-1s\";q=2;w=1, \"5-per-60s\";q=5;w=60, \"30-per-60s\";q=30;w=60"
        );
        assert_eq!(quoted("a\"b\\é"), "a\\\"b\\\\_");
    }
}
