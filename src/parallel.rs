//! Bounded parallelism: run a function over items on at most `jobs` threads,
//! results in the items' order whatever the scheduling.
//!
//! Scoped std threads pull the next item from a shared counter, so a few big
//! items and many small ones balance themselves; the first error stops the
//! others from starting new items.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

use crate::error::Result;

/// The default number of jobs: the cores available to this process.
pub fn default_jobs() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// Applies `f` to every item on up to `jobs` threads; returns the results in
/// item order, or the error of the lowest-numbered item that failed.
pub fn map<T: Sync, R: Send>(
    items: &[T],
    jobs: usize,
    f: impl Fn(&T) -> Result<R> + Sync,
) -> Result<Vec<R>> {
    let jobs = jobs.clamp(1, items.len().max(1));
    if jobs == 1 {
        return items.iter().map(f).collect();
    }
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let slots: Mutex<Vec<Option<Result<R>>>> =
        Mutex::new(std::iter::repeat_with(|| None).take(items.len()).collect());
    std::thread::scope(|scope| {
        for _ in 0..jobs {
            scope.spawn(|| loop {
                if failed.load(Ordering::Relaxed) {
                    break;
                }
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(item) = items.get(i) else { break };
                let result = f(item);
                if result.is_err() {
                    failed.store(true, Ordering::Relaxed);
                }
                slots.lock().expect("no worker panics holding the lock")[i] = Some(result);
            });
        }
    });
    let slots = slots.into_inner().expect("workers finished");
    let mut out = Vec::with_capacity(items.len());
    for slot in slots {
        match slot {
            Some(Ok(r)) => out.push(r),
            Some(Err(e)) => return Err(e),
            // Not started because another item failed first.
            None => continue,
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;

    #[test]
    fn results_keep_item_order_and_errors_win() {
        let items: Vec<u64> = (0..50).collect();
        let out = map(&items, 4, |&i| {
            std::thread::sleep(std::time::Duration::from_micros((50 - i) * 20));
            Ok(i * 2)
        })
        .unwrap();
        assert_eq!(out, items.iter().map(|i| i * 2).collect::<Vec<_>>());
        let err = map(&items, 3, |&i| {
            if i == 7 {
                Err(Error::Usage("seven".into()))
            } else {
                Ok(i)
            }
        })
        .unwrap_err();
        assert_eq!(err.to_string(), "seven");
        assert!(map(&Vec::<u8>::new(), 4, |&b| Ok(b)).unwrap().is_empty());
    }
}
