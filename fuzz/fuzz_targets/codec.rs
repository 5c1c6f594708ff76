//! The value codec: arbitrary stored bytes decode into a value or a miss, never a panic; and
//! arbitrary values round-trip through both codecs, compressed or not.

#![no_main]

use std::{collections::BTreeMap, sync::OnceLock, time::Duration};

use arbitrary::Arbitrary;
use bytes::Bytes;
use jtc_cache::{ArrayDriver, Cache, Codec};
use libfuzzer_sys::fuzz_target;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Arbitrary, Serialize, Deserialize)]
enum Shape {
    Unit,
    Number(i64),
    Float(u32),
    Text(String),
    Pair(Box<Shape>, Box<Shape>),
    List(Vec<Shape>),
    Named {
        id: u64,
        tags: Vec<String>,
        note: Option<String>,
    },
    Map(BTreeMap<String, u8>),
    Bytes(Vec<u8>),
}

#[derive(Debug, Arbitrary)]
enum Input {
    /// Bytes as some other writer stored them.
    Raw(Vec<u8>),
    /// A value written by this cache with the given codec and compression threshold.
    Value {
        shape: Shape,
        json: bool,
        compress_above: u16,
    },
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
    })
}

fuzz_target!(|input: Input| {
    runtime().block_on(async {
        let driver = ArrayDriver::builder().sweep_interval(None).build();
        let cache = Cache::new(driver);
        let ttl = Duration::from_secs(60);
        match input {
            Input::Raw(bytes) => {
                cache
                    .driver()
                    .put("k", Bytes::from(bytes), Some(ttl))
                    .await
                    .unwrap();
                let _ = cache.get::<Shape>("k").await.unwrap();
                let _ = cache.get::<serde_json::Value>("k").await.unwrap();
                let _ = cache.get::<String>("k").await.unwrap();
                let _ = cache.get::<i64>("k").await.unwrap();
                let _ = cache.get::<Vec<u8>>("k").await.unwrap();
            }
            Input::Value {
                shape,
                json,
                compress_above,
            } => {
                let codec = if json {
                    Codec::Json
                } else {
                    Codec::MessagePack
                };
                let cache = cache
                    .with_codec(codec)
                    .compress_above(usize::from(compress_above));
                // A value is either refused when written (too deep to read back) or reads
                // back equal: never written and then unreadable.
                match cache.put("k", &shape, ttl).await {
                    Ok(()) => assert_eq!(cache.get::<Shape>("k").await.unwrap(), Some(shape)),
                    Err(err) if matches!(err.kind(), jtc_cache::ErrorKind::Encode { .. }) => {
                        assert_eq!(cache.get::<Shape>("k").await.unwrap(), None);
                    }
                    Err(other) => panic!("{other:?}"),
                }
            }
        }
    });
});
