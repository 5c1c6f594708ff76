//! Conformance cases: tags.

/// This file's cases as tests of the subject made by `$make`; expanded by `conformance_tests!`
/// inside a module `tags`.
#[macro_export]
macro_rules! conformance_tags {
    ($make:ident) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn tag_flush_invalidates_its_entries_only() {
            let s = &super::$make().await;
            let c = &s.cache;
            c.tags(&["users", "posts"])
                .put("a", &1, MINUTE)
                .await
                .unwrap();
            c.tags(&["posts"]).put("b", &2, MINUTE).await.unwrap();
            c.tags(&["users"]).put("c", &3, MINUTE).await.unwrap();
            c.put("a", &"untagged", MINUTE).await.unwrap();
            assert_eq!(
                c.tags(&["posts", "users"]).get::<i32>("a").await.unwrap(),
                Some(1),
                "any order"
            );
            assert_eq!(c.tags(&["users"]).increment("c", 1).await.unwrap(), 4);
            let remembered: i32 = c
                .tags(&["posts"])
                .remember("r", MINUTE, || async { 9 })
                .await
                .unwrap();
            assert_eq!(remembered, 9);

            c.tags(&["users"]).flush().await.unwrap();

            assert_eq!(
                c.tags(&["users", "posts"]).get::<i32>("a").await.unwrap(),
                None
            );
            assert_eq!(c.tags(&["users"]).get::<i32>("c").await.unwrap(), None);
            assert_eq!(c.tags(&["posts"]).get::<i32>("b").await.unwrap(), Some(2));
            assert_eq!(c.tags(&["posts"]).get::<i32>("r").await.unwrap(), Some(9));
            assert_eq!(
                c.get::<String>("a").await.unwrap().as_deref(),
                Some("untagged")
            );
            // New writes under a flushed tag work as before.
            c.tags(&["users"]).put("c", &5, MINUTE).await.unwrap();
            assert_eq!(c.tags(&["users"]).get::<i32>("c").await.unwrap(), Some(5));
            // A full flush takes tags with it.
            c.flush().await.unwrap();
            assert_eq!(c.tags(&["posts"]).get::<i32>("b").await.unwrap(), None);
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn tag_flush_does_the_same_work_for_10_or_1000_entries() {
            let s = &super::$make().await;
            let counting = Arc::new(Counting::new(Arc::clone(s.cache.driver())));
            let cache = Cache::from_driver(Arc::clone(&counting) as Arc<dyn CacheDriver>);
            let mut work = Vec::new();
            for (tag, entries) in [("small", 10), ("large", 1000)] {
                let tagged = cache.tags(&[tag, "shared"]);
                let values: Vec<(String, i32)> =
                    (0..entries).map(|i| (format!("k{i}"), i)).collect();
                for (key, value) in &values {
                    tagged.put(key, value, MINUTE).await.unwrap();
                }
                let before = counting.calls();
                cache.tags(&[tag]).flush().await.unwrap();
                work.push(counting.calls() - before);
                assert_eq!(tagged.get::<i32>("k0").await.unwrap(), None);
            }
            assert_eq!(
                work[0], work[1],
                "flush work must not depend on the entry count"
            );
            assert!(work[0] <= 2, "one write per flushed tag: {work:?}");
        }
    };
}
