//! Conformance cases: reads and writes (get, put, has, forget, pull, touch, many, flush),
//! TTLs, hostile keys, undecodable entries, codecs, compression, size limits, bytes stored as
//! they are.

/// This file's cases as tests of the subject made by `$make`; expanded by `conformance_tests!`
/// inside a module `values`.
#[macro_export]
macro_rules! conformance_values {
    ($make:ident) => {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn put_then_get_round_trips_values() {
                let s = &super::$make().await;
                let c = &s.cache;
                c.put("user", &user(1), MINUTE).await.unwrap();
                c.put("text", "héllo wörld", MINUTE).await.unwrap();
                c.put("list", &vec![1.5, -2.0], MINUTE).await.unwrap();
                c.put("empty", &"", MINUTE).await.unwrap();
                c.put("unit", &(), MINUTE).await.unwrap();
                c.put("big", &u64::MAX, MINUTE).await.unwrap();
                assert_eq!(c.get::<User>("user").await.unwrap(), Some(user(1)));
                assert_eq!(
                    c.get::<String>("text").await.unwrap().as_deref(),
                    Some("héllo wörld")
                );
                assert_eq!(
                    c.get::<Vec<f64>>("list").await.unwrap(),
                    Some(vec![1.5, -2.0])
                );
                assert_eq!(c.get::<String>("empty").await.unwrap().as_deref(), Some(""));
                assert_eq!(c.get::<()>("unit").await.unwrap(), Some(()));
                assert_eq!(c.get::<u64>("big").await.unwrap(), Some(u64::MAX));
                c.put("user", &user(2), MINUTE).await.unwrap();
                assert_eq!(
                    c.get::<User>("user").await.unwrap(),
                    Some(user(2)),
                    "put replaces"
                );
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn get_of_a_missing_key_is_none() {
                let s = &super::$make().await;
                assert_eq!(s.cache.get::<User>("nothing here").await.unwrap(), None);
                assert_eq!(s.cache.get::<i64>("nothing here").await.unwrap(), None);
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn ttl_has_millisecond_precision() {
                let s = &super::$make().await;
                let ttl = Duration::from_secs(1);
                s.cache.put("k", &"v", ttl).await.unwrap();
                s.advance(ttl - Duration::from_millis(1) - s.slack()).await;
                assert!(s.cache.has("k").await.unwrap(), "there just before the TTL");
                s.advance(Duration::from_millis(1) + 2 * s.slack()).await;
                assert!(!s.cache.has("k").await.unwrap(), "gone at the TTL");
                assert_eq!(s.cache.get::<String>("k").await.unwrap(), None);
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn zero_ttl_removes_the_key() {
                let s = &super::$make().await;
                s.cache.put("k", &1, MINUTE).await.unwrap();
                s.cache.put("k", &2, Duration::ZERO).await.unwrap();
                assert!(!s.cache.has("k").await.unwrap());
                s.cache.put_many(&[("a", 1)], MINUTE).await.unwrap();
                s.cache.put_many(&[("a", 2)], Duration::ZERO).await.unwrap();
                assert!(!s.cache.has("a").await.unwrap());
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn forever_never_expires() {
                let s = &super::$make().await;
                s.cache.forever("k", &user(7)).await.unwrap();
                s.advance(s.long_time()).await;
                assert_eq!(s.cache.get::<User>("k").await.unwrap(), Some(user(7)));
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn has_reports_live_entries_only() {
                let s = &super::$make().await;
                assert!(!s.cache.has("k").await.unwrap());
                s.cache
                    .put("k", &false, Duration::from_millis(400))
                    .await
                    .unwrap();
                assert!(s.cache.has("k").await.unwrap());
                s.advance(Duration::from_millis(400) + s.slack()).await;
                assert!(!s.cache.has("k").await.unwrap());
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn forget_reports_whether_the_key_existed() {
                let s = &super::$make().await;
                s.cache
                    .put("k", &1, Duration::from_millis(300))
                    .await
                    .unwrap();
                s.cache.put("j", &1, MINUTE).await.unwrap();
                assert!(s.cache.forget("j").await.unwrap());
                assert!(!s.cache.forget("j").await.unwrap());
                assert!(!s.cache.forget("never").await.unwrap());
                s.advance(Duration::from_millis(300) + s.slack()).await;
                assert!(
                    !s.cache.forget("k").await.unwrap(),
                    "an expired entry did not exist"
                );
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn pull_returns_and_removes() {
                let s = &super::$make().await;
                s.cache.put("p", &user(4), MINUTE).await.unwrap();
                assert_eq!(s.cache.pull::<User>("p").await.unwrap(), Some(user(4)));
                assert_eq!(s.cache.pull::<User>("p").await.unwrap(), None);
                assert!(!s.cache.has("p").await.unwrap());
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn touch_extends_a_live_entry_only() {
                let s = &super::$make().await;
                let short = Duration::from_millis(500);
                s.cache.put("k", &1, short).await.unwrap();
                assert!(s.cache.touch("k", MINUTE).await.unwrap());
                s.advance(short + s.slack()).await;
                assert_eq!(
                    s.cache.get::<i64>("k").await.unwrap(),
                    Some(1),
                    "the new TTL holds"
                );
                assert!(!s.cache.touch("missing", MINUTE).await.unwrap());
                assert!(!s.cache.has("missing").await.unwrap());
                assert!(s.cache.touch("k", Duration::ZERO).await.unwrap());
                assert!(!s.cache.has("k").await.unwrap(), "a zero TTL removes");
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn many_and_put_many_work_in_order() {
                let s = &super::$make().await;
                s.cache
                    .put_many(&[("a", user(1)), ("b", user(2))], MINUTE)
                    .await
                    .unwrap();
                let values = s.cache.many::<User>(&["b", "missing", "a"]).await.unwrap();
                assert_eq!(values, vec![Some(user(2)), None, Some(user(1))]);
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn flush_removes_every_entry() {
                let s = &super::$make().await;
                for i in 0..20 {
                    s.cache.put(&format!("k{i}"), &i, MINUTE).await.unwrap();
                }
                s.cache.forever("f", &1).await.unwrap();
                s.cache.increment("c", 1).await.unwrap();
                s.cache.flush().await.unwrap();
                for key in ["k0", "k19", "f", "c"] {
                    assert!(!s.cache.has(key).await.unwrap(), "{key}");
                }
                s.cache.put("after", &1, MINUTE).await.unwrap();
                assert!(
                    s.cache.has("after").await.unwrap(),
                    "the cache still works after a flush"
                );
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn hostile_keys_are_safe_and_distinct() {
                let s = &super::$make().await;
                let keys = hostile_keys();
                for (i, key) in keys.iter().enumerate() {
                    s.cache.put(key, &i, MINUTE).await.unwrap();
                }
                for (i, key) in keys.iter().enumerate() {
                    assert_eq!(s.cache.get::<usize>(key).await.unwrap(), Some(i), "{key:?}");
                    assert_eq!(s.cache.increment(key, 1).await.unwrap(), i as i64 + 1);
                }
                assert!(s.cache.forget("..").await.unwrap());
                assert_eq!(
                    s.cache.get::<usize>("../../etc/passwd").await.unwrap(),
                    Some(3)
                );
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn undecodable_entries_are_misses_and_are_removed() {
                let s = &super::$make().await;
                s.cache.put("u", &"not a user", MINUTE).await.unwrap();
                assert_eq!(s.cache.get::<User>("u").await.unwrap(), None);
                assert!(!s.cache.has("u").await.unwrap(), "removed");

                for garbage in [&b"\xff\x00garbage"[..], b"jtc", b"jtc\x7f", b"jtc\x01\xc1"] {
                    s.cache
                        .driver()
                        .put("g", Bytes::copy_from_slice(garbage), Some(MINUTE))
                        .await
                        .unwrap();
                    assert_eq!(s.cache.get::<User>("g").await.unwrap(), None, "{garbage:?}");
                    assert!(!s.cache.has("g").await.unwrap(), "{garbage:?} removed");
                }

                s.cache.put("t", &user(8), MINUTE).await.unwrap();
                let mut bytes = s.cache.driver().get("t").await.unwrap().unwrap();
                bytes.truncate(bytes.len() - 4);
                s.cache
                    .driver()
                    .put("t", bytes, Some(MINUTE))
                    .await
                    .unwrap();
                assert_eq!(s.cache.get::<User>("t").await.unwrap(), None);
                assert!(s.cache.many::<User>(&["t"]).await.unwrap()[0].is_none());
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn entries_are_readable_across_codecs() {
                let s = &super::$make().await;
                let json = s.cache.clone().with_codec(Codec::Json);
                json.put("j", &user(1), MINUTE).await.unwrap();
                s.cache.put("m", &user(2), MINUTE).await.unwrap();
                assert_eq!(s.cache.get::<User>("j").await.unwrap(), Some(user(1)));
                assert_eq!(json.get::<User>("m").await.unwrap(), Some(user(2)));
                json.put("n", &41, MINUTE).await.unwrap();
                assert_eq!(s.cache.increment("n", 1).await.unwrap(), 42);
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn large_values_are_compressed_transparently() {
                let s = &super::$make().await;
                let big = page(200);
                let plain_size = rmp_size(&big);
                s.cache.put("page", &big, MINUTE).await.unwrap();
                let stored = s.cache.driver().get("page").await.unwrap().unwrap();
                assert!(
                    stored.len() * 3 < plain_size,
                    "{} vs {plain_size}",
                    stored.len()
                );
                assert_eq!(
                    s.cache.get::<Page>("page").await.unwrap(),
                    Some(big.clone())
                );

                // Readers decompress whatever their own setting; small values stay plain.
                let plain = s.cache.clone().without_compression();
                assert_eq!(plain.get::<Page>("page").await.unwrap(), Some(big.clone()));
                plain.put("page2", &big, MINUTE).await.unwrap();
                let stored = s.cache.driver().get("page2").await.unwrap().unwrap();
                assert!(stored.len() >= plain_size, "written plain");
                assert_eq!(s.cache.get::<Page>("page2").await.unwrap(), Some(big));
                s.cache.put("small", &page(1), MINUTE).await.unwrap();
                let stored = s.cache.driver().get("small").await.unwrap().unwrap();
                assert_eq!(
                    stored.len(),
                    rmp_size(&page(1)) + 4,
                    "below the threshold: plain"
                );
                // Compressed JSON too.
                let json = s.cache.clone().with_codec(Codec::Json).compress_above(64);
                json.put("j", &page(50), MINUTE).await.unwrap();
                assert_eq!(s.cache.get::<Page>("j").await.unwrap(), Some(page(50)));
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn oversized_keys_and_values_are_refused_and_change_nothing() {
                let s = &super::$make().await;
                let huge_key = "k".repeat(1024 * 1024);
                let err = s.cache.put(&huge_key, &1, MINUTE).await.unwrap_err();
                assert!(
                    matches!(err.kind(), ErrorKind::KeyTooLong { length, .. } if *length == huge_key.len())
                );
                assert!(
                    err.to_string().len() < 200,
                    "the key is not repeated: {err}"
                );
                assert!(s.cache.get::<i32>(&huge_key).await.is_err());
                assert!(s.cache.increment(&huge_key, 1).await.is_err());
                assert!(s.cache.lock(&huge_key, MINUTE).try_acquire().await.is_err());
                assert!(
                    s.cache
                        .tags(&[huge_key.as_str()])
                        .get::<i32>("k")
                        .await
                        .is_err()
                );
                let longest = "k".repeat(jtc_cache::MAX_KEY_BYTES);
                s.cache.put(&longest, &1, MINUTE).await.unwrap();
                assert_eq!(s.cache.get::<i32>(&longest).await.unwrap(), Some(1));

                let small = s.cache.clone().max_value_size(10_000).without_compression();
                small.put("v", &"kept", MINUTE).await.unwrap();
                let err = small
                    .put("v", &"x".repeat(20_000), MINUTE)
                    .await
                    .unwrap_err();
                assert!(
                    matches!(err.kind(), ErrorKind::ValueTooLarge { key, size, limit: 10_000 } if key == "v" && *size > 20_000),
                    "{err:?}"
                );
                assert_eq!(
                    small.get::<String>("v").await.unwrap().as_deref(),
                    Some("kept")
                );
                assert!(
                    !small
                        .add("w", &"x".repeat(20_000), MINUTE)
                        .await
                        .is_ok_and(|stored| stored)
                );
                assert!(!small.has("w").await.unwrap());
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn bytes_are_stored_as_they_are() {
                let s = &super::$make().await;
                let c = &s.cache;
                let page = b"<html>\xff\x00 not utf-8, not serde</html>";
                c.put_bytes("page", page, MINUTE).await.unwrap();
                assert_eq!(c.get_bytes("page").await.unwrap().as_deref(), Some(&page[..]));
                let whole = c.get::<serde_bytes::ByteBuf>("page").await.unwrap();
                assert_eq!(whole.as_deref().map(|b| &b[..]), Some(&page[..]));
                c.put_bytes("empty", b"", MINUTE).await.unwrap();
                assert_eq!(c.get_bytes("empty").await.unwrap().as_deref(), Some(&b""[..]));
                // Large enough to be compressed by the default threshold: read back whole.
                let big: Vec<u8> = b"0123456789".iter().copied().cycle().take(50_000).collect();
                c.put_bytes("big", &big, MINUTE).await.unwrap();
                assert_eq!(c.get_bytes("big").await.unwrap().as_deref(), Some(&big[..]));
                // Read at once where the driver can: the same answer, or none (go and wait).
                for (key, want) in [("page", Some(&page[..])), ("big", Some(&big[..])), ("missing", None)] {
                    if let Some(now) = c.get_bytes_now(key) {
                        assert_eq!(now.unwrap().as_deref(), want, "{key}");
                    }
                }
                // A typed value or a counter is not bytes: a miss, removed like any entry that
                // does not decode as what is asked.
                c.put("typed", &"text", MINUTE).await.unwrap();
                assert_eq!(c.get_bytes("typed").await.unwrap(), None);
                assert!(!c.has("typed").await.unwrap());
                assert_eq!(c.get_bytes("missing").await.unwrap(), None);
                c.put_bytes("gone", b"x", Duration::ZERO).await.unwrap();
                assert!(!c.has("gone").await.unwrap());
                let small = c.clone().max_value_size(100);
                let err = small.put_bytes("huge", &[7; 200], MINUTE).await.unwrap_err();
                assert!(matches!(err.kind(), ErrorKind::ValueTooLarge { .. }), "{err:?}");

                let tagged = c.tags(&["pages"]);
                tagged.put_bytes("t", page, MINUTE).await.unwrap();
                assert_eq!(tagged.get_bytes("t").await.unwrap().as_deref(), Some(&page[..]));
                tagged.flush().await.unwrap();
                assert_eq!(c.tags(&["pages"]).get_bytes("t").await.unwrap(), None);
            }
    };
}
