//! Event time per provider, as collectors/_eventtime.py keeps it (the reference): watermarks,
//! lateness, and the minimum one-way-delay clock-offset estimate over a sliding window.
//!
//! The gate's compiled route asks and moves it record by record, in the order records are
//! accepted, and the records it leaves to Python move the same state (the binding shares one
//! instance), so lateness never depends on which path judged the record before. Times are
//! int64 ns as the gate has them; differences are i128, as Python's ints never overflow.
#![forbid(unsafe_code)]

use std::collections::VecDeque;

use ahash::AHashMap;

/// Event-time state of one provider (`ProviderTime`).
/// `_UNSET`: no origin seen yet. An origin of exactly this value is never newer than it, as
/// in the reference.
const UNSET: i64 = i64::MIN;

#[derive(Debug, Clone)]
struct Provider {
    /// the newest origin time seen; [`UNSET`] before the first event
    max_origin_ns: i64,
    /// (window bucket index, minimum offset in that bucket), oldest first
    offsets: VecDeque<(i64, i128)>,
}

impl Default for Provider {
    fn default() -> Self {
        Self {
            max_origin_ns: UNSET,
            offsets: VecDeque::new(),
        }
    }
}

/// Watermarks and clock-offset estimates for every provider a sidecar sees (`EventTime`).
#[derive(Debug, Clone)]
pub struct EventTime {
    allowed_lateness_ns: i64,
    bucket_ns: i64,
    buckets: i64,
    max_providers: usize,
    providers: AHashMap<String, Provider>,
}

impl EventTime {
    /// As `EventTime(allowed_lateness_ns, skew_window_ns, buckets, max_providers)`. `buckets`
    /// must be at least 1 (Python's divides by it).
    pub fn new(
        allowed_lateness_ns: i64,
        skew_window_ns: i64,
        buckets: i64,
        max_providers: usize,
    ) -> Self {
        Self {
            allowed_lateness_ns,
            bucket_ns: skew_window_ns.div_euclid(buckets.max(1)).max(1),
            buckets,
            max_providers,
            providers: AHashMap::new(),
        }
    }

    /// Providers with state.
    pub fn len(&self) -> usize {
        self.providers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.providers.is_empty()
    }

    fn watermark(&self, p: &Provider) -> Option<i128> {
        (p.max_origin_ns != UNSET)
            .then(|| i128::from(p.max_origin_ns) - i128::from(self.allowed_lateness_ns))
    }

    /// The provider's watermark, or None before its first event.
    pub fn watermark_ns(&self, provider: &str) -> Option<i128> {
        self.providers.get(provider).and_then(|p| self.watermark(p))
    }

    /// How late an event born at `origin_ns` would be (0 when on time), without accounting it.
    pub fn late_ns(&self, provider: &str, origin_ns: i64) -> i128 {
        self.watermark_ns(provider)
            .map_or(0, |w| (w - i128::from(origin_ns)).max(0))
    }

    /// Account one event; returns its lateness in ns (0 when on time), judged against the
    /// watermark before the event advances it.
    pub fn observe(&mut self, provider: &str, origin_ns: i64, ingested_ns: i64) -> i128 {
        if !self.providers.contains_key(provider) {
            if self.providers.len() >= self.max_providers {
                return 0; // a provider flood must not grow state without bound
            }
            self.providers
                .insert(provider.to_owned(), Provider::default());
        }
        let allowed = i128::from(self.allowed_lateness_ns);
        let (bucket_ns, buckets) = (self.bucket_ns, self.buckets);
        let Some(p) = self.providers.get_mut(provider) else {
            return 0;
        };
        let late = if p.max_origin_ns == UNSET {
            0
        } else {
            (i128::from(p.max_origin_ns) - allowed - i128::from(origin_ns)).max(0)
        };
        if origin_ns > p.max_origin_ns {
            p.max_origin_ns = origin_ns;
        }
        let bucket = ingested_ns.div_euclid(bucket_ns);
        let offset = i128::from(ingested_ns) - i128::from(origin_ns);
        let q = &mut p.offsets;
        match q.back_mut() {
            Some(last) if last.0 == bucket => {
                if offset < last.1 {
                    last.1 = offset;
                }
            }
            _ => {
                q.push_back((bucket, offset));
                let oldest = i128::from(bucket) - i128::from(buckets);
                while q.front().is_some_and(|f| i128::from(f.0) <= oldest) {
                    q.pop_front();
                }
            }
        }
        late
    }

    /// Estimated `ingested - origin` for the provider over the window, or None.
    pub fn clock_offset_ns(&self, provider: &str) -> Option<i128> {
        self.providers
            .get(provider)
            .and_then(|p| p.offsets.iter().map(|o| o.1).min())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lateness_is_judged_before_the_event_moves_the_watermark() {
        let mut et = EventTime::new(5, 60_000, 12, 10);
        assert_eq!(et.late_ns("a", 100), 0);
        assert_eq!(et.observe("a", 100, 1_000), 0);
        assert_eq!(et.watermark_ns("a"), Some(95));
        assert_eq!(et.late_ns("a", 90), 5);
        assert_eq!(et.observe("a", 90, 1_001), 5);
        assert_eq!(et.watermark_ns("a"), Some(95)); // a late event never moves it back
        assert_eq!(et.clock_offset_ns("a"), Some(900));
    }

    #[test]
    fn the_offset_window_forgets_old_buckets() {
        let mut et = EventTime::new(0, 1_000, 10, 10); // buckets of 100 ns
        et.observe("a", 0, 50); // offset 50 in bucket 0
        et.observe("a", 1_000, 1_100); // offset 100 in bucket 11: bucket 0 is out
        assert_eq!(et.clock_offset_ns("a"), Some(100));
    }

    #[test]
    fn a_provider_flood_is_bounded() {
        let mut et = EventTime::new(0, 1_000, 10, 2);
        et.observe("a", 1, 1);
        et.observe("b", 1, 1);
        assert_eq!(et.observe("c", 1, 1), 0);
        assert_eq!(et.len(), 2);
        assert_eq!(et.watermark_ns("c"), None);
    }

    #[test]
    fn extreme_times_do_not_overflow() {
        let mut et = EventTime::new(i64::MAX, 1_000, 10, 2);
        et.observe("a", i64::MIN + 1, i64::MAX);
        assert_eq!(
            et.clock_offset_ns("a"),
            Some(i128::from(i64::MAX) - i128::from(i64::MIN + 1))
        );
        assert_eq!(et.late_ns("a", i64::MIN), 0);
        et.observe("b", i64::MIN, 0); // the reference's unset value: no watermark yet
        assert_eq!(et.watermark_ns("b"), None);
    }
}
