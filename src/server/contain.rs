//! One panic containment around every handler: requests and notifications alike (chat,
//! status, sessions, code actions, document sync ...).
//!
//! Handlers run inside the connection's server future, so a panic in any of them would end
//! the whole connection (and with stdio, the daemon). [`ContainPanics`] wraps the service
//! that dispatches them all: a panicking request is answered -32603, a panicking
//! notification is logged, and the connection goes on. Wrapping the dispatcher, not each
//! handler, means a handler added later is contained without anyone remembering to.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_util::FutureExt;
use tower::Service;
use tower_lsp_server::jsonrpc::{Request, Response};

use super::lsp::to_rpc_error;
use crate::error::Error;

type Answer<E> = Pin<Box<dyn Future<Output = Result<Option<Response>, E>> + Send>>;

pub struct ContainPanics<S> {
    inner: S,
}

impl<S> ContainPanics<S> {
    pub fn new(inner: S) -> ContainPanics<S> {
        ContainPanics { inner }
    }
}

impl<S> Service<Request> for ContainPanics<S>
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
        let method = request.method().to_string();
        let answer = match std::panic::catch_unwind(AssertUnwindSafe(|| self.inner.call(request))) {
            Ok(answer) => answer,
            Err(panic) => {
                let answer = contained(&method, id, &*panic);
                return Box::pin(async move { Ok(answer) });
            }
        };
        Box::pin(async move {
            match AssertUnwindSafe(answer).catch_unwind().await {
                Ok(answer) => answer,
                Err(panic) => Ok(contained(&method, id, &*panic)),
            }
        })
    }
}

/// Logs a panic; a request (it has an id) is answered with an internal error.
fn contained(
    method: &str,
    id: Option<tower_lsp_server::jsonrpc::Id>,
    panic: &(dyn std::any::Any + Send),
) -> Option<Response> {
    let what = panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_default();
    tracing::error!("the handler of {method} panicked: {what}");
    let error = Error::internal(format!(
        "internal error in cfgate (the request was dropped; the daemon goes on): {what}"
    ));
    id.map(|id| Response::from_error(id, to_rpc_error(error)))
}

/// Debug builds only: a message whose method is listed (comma-separated) in
/// `$CFGATE_TEST_PANIC_METHODS` panics where its handler runs, inside the containment, so
/// tests can prove that every kind of handler is contained.
#[cfg(debug_assertions)]
pub struct PanicOnAsk<S>(pub S);

#[cfg(debug_assertions)]
impl<S> Service<Request> for PanicOnAsk<S>
where
    S: Service<Request, Response = Option<Response>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = Option<Response>;
    type Error = S::Error;
    type Future = Answer<S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let asked = std::env::var("CFGATE_TEST_PANIC_METHODS")
            .is_ok_and(|methods| methods.split(',').any(|m| m == request.method()));
        let method = request.method().to_string();
        let answer = self.0.call(request);
        Box::pin(async move {
            if asked {
                panic!("test panic requested in {method}");
            }
            answer.await
        })
    }
}
