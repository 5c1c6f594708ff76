//! Property tests: arbitrary values round-trip through both codecs (compressed or not), any
//! integer is a counter, and any key is a distinct file inside the cache folder.

use std::{collections::BTreeMap, time::Duration};

use jtc_cache::{ArrayDriver, Cache, Codec, FileDriver};
use proptest::prelude::*;
use serde::{Deserialize, Serialize};

const TTL: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum Node {
    Leaf,
    Number(i64),
    Big(u64),
    Text(String),
    Flag(bool),
    Blob(Vec<u8>),
    Pair(Box<Node>, Box<Node>),
    List(Vec<Node>),
    Record {
        id: u32,
        name: String,
        #[serde(skip_serializing_if = "Option::is_none", default)]
        note: Option<String>,
        attributes: BTreeMap<String, i32>,
    },
}

fn node() -> impl Strategy<Value = Node> {
    let leaf = prop_oneof![
        Just(Node::Leaf),
        any::<i64>().prop_map(Node::Number),
        any::<u64>().prop_map(Node::Big),
        ".*".prop_map(Node::Text),
        any::<bool>().prop_map(Node::Flag),
        prop::collection::vec(any::<u8>(), 0..64).prop_map(Node::Blob),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            (inner.clone(), inner.clone()).prop_map(|(a, b)| Node::Pair(Box::new(a), Box::new(b))),
            prop::collection::vec(inner, 0..8).prop_map(Node::List),
            (
                any::<u32>(),
                ".*",
                prop::option::of(".*"),
                prop::collection::btree_map(".{0,8}", any::<i32>(), 0..6)
            )
                .prop_map(|(id, name, note, attributes)| Node::Record {
                    id,
                    name,
                    note,
                    attributes
                }),
        ]
    })
}

fn block_on<T>(future: impl Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(future)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn values_round_trip_through_both_codecs(
        value in node(),
        json in any::<bool>(),
        compress_above in prop_oneof![Just(None), (0usize..256).prop_map(Some)],
    ) {
        block_on(async {
            let codec = if json { Codec::Json } else { Codec::MessagePack };
            let mut cache = Cache::new(ArrayDriver::new()).with_codec(codec);
            cache = match compress_above {
                Some(bytes) => cache.compress_above(bytes),
                None => cache.without_compression(),
            };
            cache.put("v", &value, TTL).await.unwrap();
            assert_eq!(cache.get::<Node>("v").await.unwrap(), Some(value.clone()));
            // Whatever wrote it, a reader with other settings reads it.
            let other = Cache::from_driver(cache.driver().clone()).with_codec(Codec::Json);
            assert_eq!(other.get::<Node>("v").await.unwrap(), Some(value));
        });
    }

    /// Regression (found by the `codec` fuzz target): a value nested deeper than the decoder
    /// reads was written and then silently unreadable. Now it is refused when written.
    #[test]
    fn a_written_value_always_reads_back(depth in 0usize..300, json in any::<bool>(), pairs in any::<bool>()) {
        let value = (0..depth).fold(Node::Leaf, |inner, _| {
            if pairs {
                Node::Pair(Box::new(inner), Box::new(Node::Leaf))
            } else {
                Node::List(vec![inner])
            }
        });
        block_on(async {
            let codec = if json { Codec::Json } else { Codec::MessagePack };
            let cache = Cache::new(ArrayDriver::new()).with_codec(codec);
            match cache.put("v", &value, TTL).await {
                Ok(()) => assert_eq!(cache.get::<Node>("v").await.unwrap(), Some(value)),
                Err(err) => {
                    assert!(matches!(err.kind(), jtc_cache::ErrorKind::Encode { .. }), "{err:?}");
                    assert!(!cache.has("v").await.unwrap());
                }
            }
        });
    }

    #[test]
    fn any_stored_integer_is_a_counter(start in any::<i64>(), by in any::<i64>()) {
        block_on(async {
            let cache = Cache::new(ArrayDriver::new());
            cache.put("n", &start, TTL).await.unwrap();
            assert_eq!(cache.get::<i64>("n").await.unwrap(), Some(start));
            match start.checked_add(by) {
                Some(sum) => assert_eq!(cache.increment("n", by).await.unwrap(), sum),
                None => {
                    assert!(cache.increment("n", by).await.is_err());
                    assert_eq!(cache.get::<i64>("n").await.unwrap(), Some(start), "unchanged");
                }
            }
        });
    }

    #[test]
    fn any_key_is_a_distinct_file_inside_the_folder(
        keys in prop::collection::hash_set(
            prop_oneof![".*", "[./\\\\]{0,12}", "(\\.\\./){1,8}[a-z]{0,4}", "\\PC{0,300}"],
            1..12,
        )
    ) {
        let dir = tempfile::tempdir().unwrap();
        let driver = FileDriver::new(dir.path()).unwrap();
        let paths: std::collections::HashSet<_> = keys.iter().map(|k| driver.entry_path(k)).collect();
        assert_eq!(paths.len(), keys.len(), "two keys share a file");
        for path in &paths {
            assert!(path.starts_with(dir.path()), "{path:?}");
            assert!(!path.components().any(|c| c.as_os_str() == ".."), "{path:?}");
        }
        block_on(async {
            let cache = Cache::new(driver);
            for key in &keys {
                cache.put(key, key, TTL).await.unwrap();
            }
            for key in &keys {
                assert_eq!(cache.get::<String>(key).await.unwrap().as_ref(), Some(key));
            }
        });
    }
}
