//! Where the engine's work runs. Every tensor operation of the CPU backend that splits its work
//! (matrix products, element-wise passes, [`crate::model`]'s own kernels) does so on rayon's
//! global pool. Called from a thread outside the pool, each such operation is handed to the
//! pool while the calling thread sleeps until it is done: a decoding step makes about 250 such
//! hand-overs, and on one thread the sleeping and waking cost a third of decoding time. Run on
//! a pool thread, the same operations start on the spot and only the spare threads' share of
//! the work is handed over.
//!
//! A pool thread that waits for its share to come back may take up any other work given to the
//! pool meanwhile and finish that first; so a process that runs one experiment (the CLI) runs it
//! on the pool, and one that serves several callers at once (the web server) does not.

/// Runs `work` on a thread of rayon's global pool (at once if this is one) and returns its
/// result; a panic in `work` reaches the caller.
pub fn on_pool<R: Send>(work: impl FnOnce() -> R + Send) -> R {
    if rayon::current_thread_index().is_some() {
        work()
    } else {
        rayon::scope(|_| work())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn work_runs_on_the_pool_and_returns_its_result() {
        assert_eq!(rayon::current_thread_index(), None);
        let inside = on_pool(rayon::current_thread_index);
        assert!(inside.is_some());
        assert_eq!(on_pool(|| on_pool(|| 6 * 7)), 42);
    }
}
