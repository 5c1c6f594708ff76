//! The names of the cache's public operations: the `op` of spans, logs and metrics.

/// Declares [`OpName`] and its text, in one list.
macro_rules! op_names {
    ($($variant:ident = $text:literal,)*) => {
        /// One public operation of a cache. A closed list, so that per-operation metric
        /// handles live in an array indexed by it instead of a map.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub(crate) enum OpName {
            $($variant,)*
        }

        impl OpName {
            /// Every operation, in declaration order (`ALL[op as usize] == op`).
            #[cfg_attr(not(any(test, feature = "metrics")), allow(dead_code))]
            pub(crate) const ALL: &'static [OpName] = &[$(OpName::$variant,)*];

            /// The name in spans, logs and the `op` label of metrics.
            pub(crate) const fn as_str(self) -> &'static str {
                match self {
                    $(OpName::$variant => $text,)*
                }
            }
        }
    };
}

op_names! {
    Get = "get",
    Has = "has",
    Many = "many",
    Pull = "pull",
    Put = "put",
    Forever = "forever",
    Add = "add",
    PutMany = "put_many",
    Touch = "touch",
    Forget = "forget",
    Flush = "flush",
    Prune = "prune",
    Increment = "increment",
    Decrement = "decrement",
    Hit = "hit",
    Rate = "rate",
    Remember = "remember",
    Flexible = "flexible",
    Refresh = "refresh",
    LockAcquire = "lock_acquire",
    LockOwner = "lock_owner",
    LockRelease = "lock_release",
    LockForceRelease = "lock_force_release",
    TaggedGet = "tagged_get",
    TaggedHas = "tagged_has",
    TaggedPut = "tagged_put",
    TaggedForever = "tagged_forever",
    TaggedAdd = "tagged_add",
    TaggedRemember = "tagged_remember",
    TaggedIncrement = "tagged_increment",
    TaggedForget = "tagged_forget",
    TaggedFlush = "tagged_flush",
}

impl OpName {
    /// How many operations there are.
    #[cfg_attr(not(any(test, feature = "metrics")), allow(dead_code))]
    pub(crate) const COUNT: usize = Self::ALL.len();
}

#[cfg(test)]
mod tests {
    use super::OpName;

    #[test]
    fn each_operation_sits_at_its_own_index_with_a_unique_name() {
        for (index, op) in OpName::ALL.iter().enumerate() {
            assert_eq!(*op as usize, index);
        }
        let mut names: Vec<_> = OpName::ALL.iter().map(|op| op.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), OpName::COUNT);
    }
}
