//! A transport wrapper that counts requests and bytes, so every report can say what a command
//! cost on the wire (and the tests can check that an up-to-date push sends no objects).
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use futures::future::BoxFuture;

use super::error::Result;
use super::transport::{Transport, Version};

pub struct Counting {
    inner: Arc<dyn Transport>,
    stats: Arc<Stats>,
}

#[derive(Default)]
pub struct Stats {
    pub requests: AtomicU64,
    pub sent: AtomicU64,
    pub received: AtomicU64,
}

impl Stats {
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }
    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }
    pub fn received(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }
}

impl Counting {
    pub fn new(inner: Arc<dyn Transport>) -> Counting {
        Counting { inner, stats: Arc::default() }
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    fn count(&self, sent: usize) -> Arc<Stats> {
        self.stats.requests.fetch_add(1, Ordering::Relaxed);
        self.stats.sent.fetch_add(sent as u64, Ordering::Relaxed);
        self.stats.clone()
    }
}

fn received(stats: &Stats, n: usize) {
    stats.received.fetch_add(n as u64, Ordering::Relaxed);
}

impl Transport for Counting {
    fn url(&self) -> String {
        self.inner.url()
    }

    fn put(&self, key: &str, data: Bytes) -> BoxFuture<'static, Result<()>> {
        self.count(data.len());
        self.inner.put(key, data)
    }

    fn put_new(&self, key: &str, data: Bytes) -> BoxFuture<'static, Result<bool>> {
        self.count(data.len());
        self.inner.put_new(key, data)
    }

    fn get(&self, key: &str) -> BoxFuture<'static, Result<Option<Bytes>>> {
        let stats = self.count(0);
        let f = self.inner.get(key);
        Box::pin(async move {
            let r = f.await?;
            received(&stats, r.as_ref().map_or(0, |b| b.len()));
            Ok(r)
        })
    }

    fn get_range(&self, key: &str, range: Range<u64>) -> BoxFuture<'static, Result<Bytes>> {
        let stats = self.count(0);
        let f = self.inner.get_range(key, range);
        Box::pin(async move {
            let r = f.await?;
            received(&stats, r.len());
            Ok(r)
        })
    }

    fn list(&self, prefix: &str) -> BoxFuture<'static, Result<Vec<String>>> {
        self.count(0);
        self.inner.list(prefix)
    }

    fn read_ref(&self, key: &str) -> BoxFuture<'static, Result<Option<(Bytes, Version)>>> {
        let stats = self.count(0);
        let f = self.inner.read_ref(key);
        Box::pin(async move {
            let r = f.await?;
            received(&stats, r.as_ref().map_or(0, |(b, _)| b.len()));
            Ok(r)
        })
    }

    fn write_ref(
        &self,
        key: &str,
        data: Bytes,
        expected: Option<Version>,
    ) -> BoxFuture<'static, Result<bool>> {
        self.count(data.len());
        self.inner.write_ref(key, data, expected)
    }
}
