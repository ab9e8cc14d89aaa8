//! `--kube-api-qps` and `--kube-api-burst`: a token bucket in front of
//! every request the controller sends to the API server, as client-go's
//! QPS and burst limit mpi-operator's. A watch counts once, when it opens.
//!
//! The bucket ([`Bucket`]) is pure; the tower layer ([`ThrottleLayer`])
//! waits in `poll_ready` until the bucket gives a token, so that kube's
//! client, which drives its service from one task, queues requests instead
//! of sending them.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

/// Tokens refill at `qps` per second, up to `burst`; a request takes one.
#[derive(Debug, Clone)]
pub struct Bucket {
    qps: f64,
    burst: f64,
    tokens: f64,
    at: Instant,
}

impl Bucket {
    /// A full bucket. `qps` must be positive and `burst` at least 1.
    pub fn new(qps: f64, burst: u32, now: Instant) -> Bucket {
        assert!(qps > 0.0 && burst >= 1, "qps {qps}, burst {burst}");
        Bucket {
            qps,
            burst: f64::from(burst),
            tokens: f64::from(burst),
            at: now,
        }
    }

    /// Take a token at `now`, or say how long until one is there.
    pub fn take(&mut self, now: Instant) -> Result<(), Duration> {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.qps).min(self.burst);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - self.tokens) / self.qps))
        }
    }
}

/// The layer: `None` limits nothing.
#[derive(Clone)]
pub struct ThrottleLayer(Option<Arc<Mutex<Bucket>>>);

impl ThrottleLayer {
    /// `qps` 0 (or less) turns the limit off.
    pub fn new(qps: f64, burst: u32) -> ThrottleLayer {
        ThrottleLayer(
            (qps > 0.0)
                .then(|| Arc::new(Mutex::new(Bucket::new(qps, burst.max(1), Instant::now())))),
        )
    }
}

impl<S> tower_layer::Layer<S> for ThrottleLayer {
    type Service = Throttled<S>;
    fn layer(&self, inner: S) -> Throttled<S> {
        Throttled {
            inner,
            bucket: self.0.clone(),
            wait: None,
            granted: false,
        }
    }
}

/// tokio's clock, which tests can pause, as a std `Instant`.
fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

pub struct Throttled<S> {
    inner: S,
    bucket: Option<Arc<Mutex<Bucket>>>,
    wait: Option<Pin<Box<tokio::time::Sleep>>>,
    /// A token is taken for the next `call`.
    granted: bool,
}

impl<S, R> tower_service::Service<R> for Throttled<S>
where
    S: tower_service::Service<R>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        if let Some(bucket) = &self.bucket {
            while !self.granted {
                if let Some(wait) = self.wait.as_mut() {
                    if wait.as_mut().poll(cx).is_pending() {
                        return Poll::Pending;
                    }
                    self.wait = None;
                }
                match bucket.lock().expect("the bucket").take(now()) {
                    Ok(()) => self.granted = true,
                    Err(delay) => self.wait = Some(Box::pin(tokio::time::sleep(delay))),
                }
            }
        }
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: R) -> S::Future {
        self.granted = false;
        self.inner.call(req)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_bucket_gives_burst_tokens_then_one_per_interval() {
        let t0 = Instant::now();
        let mut b = Bucket::new(10.0, 3, t0);
        for _ in 0..3 {
            assert_eq!(b.take(t0), Ok(()));
        }
        let wait = b.take(t0).unwrap_err();
        assert!((wait.as_secs_f64() - 0.1).abs() < 1e-9, "{wait:?}");
        assert_eq!(b.take(t0 + Duration::from_millis(100)), Ok(()));
        assert!(b.take(t0 + Duration::from_millis(100)).is_err());
        // A long pause refills no more than the burst.
        let later = t0 + Duration::from_secs(60);
        for _ in 0..3 {
            assert_eq!(b.take(later), Ok(()));
        }
        assert!(b.take(later).is_err());
    }

    #[test]
    fn in_any_window_the_tokens_given_stay_within_burst_plus_rate() {
        let t0 = Instant::now();
        let mut b = Bucket::new(5.0, 2, t0);
        let mut given = 0;
        // One attempt every 10 ms for 2 s.
        for i in 0..200u64 {
            if b.take(t0 + Duration::from_millis(i * 10)).is_ok() {
                given += 1;
            }
        }
        // 2 at once, then 5 per second for 1.99 s.
        assert!((11..=12).contains(&given), "{given}");
    }

    #[tokio::test(start_paused = true)]
    async fn the_layer_spaces_requests_at_the_rate() {
        use tower_layer::Layer;
        use tower_service::Service;
        #[derive(Clone)]
        struct Echo;
        impl Service<u32> for Echo {
            type Response = u32;
            type Error = std::convert::Infallible;
            type Future = std::future::Ready<Result<u32, Self::Error>>;
            fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
                Poll::Ready(Ok(()))
            }
            fn call(&mut self, r: u32) -> Self::Future {
                std::future::ready(Ok(r))
            }
        }
        let mut s = ThrottleLayer::new(4.0, 1).layer(Echo);
        let start = tokio::time::Instant::now();
        for i in 0..5 {
            std::future::poll_fn(|cx| s.poll_ready(cx)).await.unwrap();
            assert_eq!(s.call(i).await.unwrap(), i);
        }
        // One at once, then four more at 4 per second.
        assert_eq!(start.elapsed(), Duration::from_secs(1));
        let mut off = ThrottleLayer::new(0.0, 1).layer(Echo);
        for i in 0..100 {
            std::future::poll_fn(|cx| off.poll_ready(cx)).await.unwrap();
            off.call(i).await.unwrap();
        }
        assert_eq!(start.elapsed(), Duration::from_secs(1), "0 is no limit");
    }
}
