//! When the shared daemon is stopped, every request in flight is answered with the
//! `daemon_stopped` error at once, so no editor waits on a request that will never end.
//! Like the panic containment, it wraps the dispatcher, so every request is covered.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::sync::watch;
use tower::Service;
use tower_lsp_server::jsonrpc::{Request, Response};

use super::lsp::to_rpc_error;
use crate::error::Error;

type Answer<E> = Pin<Box<dyn Future<Output = Result<Option<Response>, E>> + Send>>;

pub struct AnswerOnStop<S> {
    inner: S,
    stopping: watch::Receiver<bool>,
}

impl<S> AnswerOnStop<S> {
    pub fn new(inner: S, stopping: watch::Receiver<bool>) -> AnswerOnStop<S> {
        AnswerOnStop { inner, stopping }
    }
}

/// Returns once `stopping` turns true; never, if it cannot any more.
pub async fn stopped(mut stopping: watch::Receiver<bool>) {
    if stopping.wait_for(|s| *s).await.is_err() {
        std::future::pending::<()>().await;
    }
}

impl<S> Service<Request> for AnswerOnStop<S>
where
    S: Service<Request, Response = Option<Response>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = Option<Response>;
    type Error = S::Error;
    type Future = Answer<S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let id = request.id().cloned();
        let answer = self.inner.call(request);
        let stopping = self.stopping.clone();
        Box::pin(async move {
            tokio::select! {
                biased;
                answer = answer => answer,
                () = stopped(stopping) => Ok(id.map(|id| {
                    Response::from_error(id, to_rpc_error(Error::daemon_stopped()))
                })),
            }
        })
    }
}
