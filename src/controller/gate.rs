//! Writes only while leading: a tower layer on the controller's API client that refuses every
//! request that changes something (POST, PUT, PATCH, DELETE) unless this replica's
//! [`Leadership`] is still valid, and cuts each write off when that validity ends. Reads pass.
//!
//! Gating the client rather than each call site covers every write the controller makes
//! (children, status, Events) and any added later. A frozen leader that wakes up after a standby
//! took over is refused before a byte leaves, since validity is measured on the monotonic clock.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use http::{Method, Request};
use tower::{BoxError, Layer, Service};

use super::leader::Leadership;

/// The error a refused write carries (inside `kube::Error::Service`).
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    #[error("not leading: this replica does not hold the leader lease, so it does not write")]
    NotLeading,
    #[error("the leader lease's renew deadline passed while this write was in flight")]
    DeadlinePassed,
}

/// Whether `error` (from any kube call) is a write this gate refused.
pub fn refused(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(error);
    while let Some(e) = next {
        if e.downcast_ref::<Refused>().is_some() {
            return true;
        }
        next = e.source();
    }
    false
}

fn writes(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

#[derive(Clone)]
pub struct LeaderOnly {
    leadership: Leadership,
}

impl LeaderOnly {
    pub fn new(leadership: Leadership) -> Self {
        Self { leadership }
    }
}

impl<S> Layer<S> for LeaderOnly {
    type Service = LeaderOnlyService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        LeaderOnlyService {
            inner,
            leadership: self.leadership.clone(),
        }
    }
}

#[derive(Clone)]
pub struct LeaderOnlyService<S> {
    inner: S,
    leadership: Leadership,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, B> Service<Request<B>> for LeaderOnlyService<S>
where
    S: Service<Request<B>>,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = BoxFuture<Result<S::Response, BoxError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        if !writes(req.method()) {
            let call = self.inner.call(req);
            return Box::pin(async move { call.await.map_err(Into::into) });
        }
        // Checked as late as possible: the request leaves when this future is first polled.
        let Some(left) = self.leadership.remaining(Instant::now()) else {
            return Box::pin(async { Err(Refused::NotLeading.into()) });
        };
        let call = self.inner.call(req);
        Box::pin(async move {
            match tokio::time::timeout(left, call).await {
                Ok(result) => result.map_err(Into::into),
                Err(_) => Err(Refused::DeadlinePassed.into()),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_pass_and_writes_are_recognised() {
        assert!(!writes(&Method::GET));
        assert!(writes(&Method::PATCH));
        assert!(writes(&Method::POST));
        assert!(writes(&Method::PUT));
        assert!(writes(&Method::DELETE));
        let wrapped = kube::Error::Service(Box::new(Refused::NotLeading));
        assert!(refused(&wrapped));
        assert!(!refused(&kube::Error::LinesCodecMaxLineLengthExceeded));
    }

    fn request(method: Method) -> Request<()> {
        Request::builder()
            .method(method)
            .uri("/apis/apps/v1/namespaces/ns/deployments/p")
            .body(())
            .unwrap()
    }

    #[tokio::test]
    async fn writes_reach_the_server_only_while_leading() {
        let leadership = Leadership::default();
        let (mut service, mut server) = tower_test::mock::spawn_layer::<Request<()>, &'static str, _>(
            LeaderOnly::new(leadership.clone()),
        );
        server.allow(10);
        // Not leading: a write is refused before it leaves; a read goes through.
        assert!(service.poll_ready().is_ready());
        let err = service.call(request(Method::PATCH)).await.unwrap_err();
        assert!(err.downcast_ref::<Refused>().is_some(), "{err}");
        let read = service.call(request(Method::GET));
        let (req, reply) = server.next_request().await.unwrap();
        assert_eq!(req.method(), Method::GET);
        reply.send_response("ok");
        assert_eq!(read.await.unwrap(), "ok");

        // Leading for a while: writes go through.
        leadership.extend(Instant::now() + std::time::Duration::from_secs(60));
        assert!(service.poll_ready().is_ready());
        let write = service.call(request(Method::PUT));
        let (req, reply) = server.next_request().await.unwrap();
        assert_eq!(req.method(), Method::PUT);
        reply.send_response("written");
        assert_eq!(write.await.unwrap(), "written");
    }

    #[tokio::test(start_paused = true)]
    async fn a_write_in_flight_at_the_deadline_is_cut_off() {
        let leadership = Leadership::default();
        leadership.extend(Instant::now() + std::time::Duration::from_secs(2));
        let (mut service, mut server) = tower_test::mock::spawn_layer::<Request<()>, &'static str, _>(
            LeaderOnly::new(leadership),
        );
        server.allow(1);
        assert!(service.poll_ready().is_ready());
        let write = service.call(request(Method::POST));
        // The server never answers; the gate gives up when the validity ends.
        let _held = server.next_request().await.unwrap();
        let err = write.await.unwrap_err();
        assert!(
            matches!(err.downcast_ref::<Refused>(), Some(Refused::DeadlinePassed)),
            "{err}"
        );
    }
}
