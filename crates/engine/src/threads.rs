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
//! on the global pool ([`on_pool`]), and one that serves several callers at once (the web server)
//! gives each long-lived caller, such as a job thread, a pool of its own ([`OwnPool`]): its
//! operations start on the spot and no other caller's work can be taken up inside them.

/// Runs `work` on a thread of rayon's global pool (at once if this is one) and returns its
/// result; a panic in `work` reaches the caller.
pub fn on_pool<R: Send>(work: impl FnOnce() -> R + Send) -> R {
    if rayon::current_thread_index().is_some() {
        work()
    } else {
        rayon::scope(|_| work())
    }
}

/// A pool of worker threads for one caller, as many as the global pool has (`RAYON_NUM_THREADS`
/// or the machine's cores): work run by [`OwnPool::run`] and every parallel operation inside it
/// use these threads only.
pub struct OwnPool(Option<rayon::ThreadPool>);

impl OwnPool {
    /// A pool whose threads are called `{name}-{i}`; if the threads cannot be started, work runs
    /// on the caller's thread as before (handed to the global pool).
    pub fn new(name: &str) -> Self {
        let name = name.to_string();
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(rayon::current_num_threads())
            .thread_name(move |i| format!("{name}-{i}"))
            .build();
        Self(pool.ok())
    }

    /// Runs `work` on a thread of this pool and returns its result; a panic in `work` reaches
    /// the caller.
    pub fn run<R: Send>(&self, work: impl FnOnce() -> R + Send) -> R {
        match &self.0 {
            Some(pool) => pool.install(work),
            None => work(),
        }
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

    #[test]
    fn an_own_pool_runs_work_and_its_parallel_operations_on_its_threads() {
        use rayon::prelude::*;
        let pool = OwnPool::new("own");
        let names: Vec<String> = pool.run(|| {
            (0..64)
                .into_par_iter()
                .map(|_| std::thread::current().name().unwrap_or("").to_string())
                .collect()
        });
        assert!(names.iter().all(|n| n.starts_with("own-")), "{names:?}");
        let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            pool.run(|| panic!("in the pool"))
        }));
        assert!(caught.is_err(), "a panic reaches the caller");
        assert_eq!(pool.run(|| 6 * 7), 42, "the pool outlives a panic");
    }
}
