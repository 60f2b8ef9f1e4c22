//! Small future utilities shared by the client and the server.

use std::future::Future;
use std::pin::Pin;

use futures_util::future::Either;

/// A boxed, sendable future.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// Whichever of `a` and `b` completes first (`a` when both are ready): a
/// `select!` that needs no tokio `macros` feature from the runtime's users.
pub(crate) async fn first<A: Future, B: Future>(a: A, b: B) -> Either<A::Output, B::Output> {
    match futures_util::future::select(std::pin::pin!(a), std::pin::pin!(b)).await {
        Either::Left((a, _)) => Either::Left(a),
        Either::Right((b, _)) => Either::Right(b),
    }
}
