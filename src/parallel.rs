//! Bounded parallelism: run a function over items on at most `jobs` threads,
//! results in the items' order whatever the scheduling.
//!
//! Scoped std threads pull the next item (or run of items) from a shared
//! counter, so a few big items and many small ones balance themselves; the
//! first error stops the others from starting new items.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

use crate::error::Result;

/// The default number of jobs: the cores available to this process.
pub fn default_jobs() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// Files smaller than this are taken in runs of one folder's files per
/// thread (at most [`SMALL_RUN`]; see [`folder_run`]).
pub const SMALL_FILE: u64 = 256 * 1024;

/// How many small files of one folder a thread takes at once, at most.
pub const SMALL_RUN: usize = 256;

/// How many items from `items[i]` a thread takes at once (the `run` of
/// [`map_claiming`]): the small files of one folder that follow each other
/// (at most [`SMALL_RUN`]), so that threads do not take turns on that
/// folder's lock for every file made, linked or renamed in it; a big file,
/// or an item that is no file (`folder` gives `None`), alone.
pub fn folder_run<'a, T>(
    items: &'a [T],
    i: usize,
    folder: impl Fn(&'a T) -> Option<&'a std::path::Path>,
    bytes: impl Fn(&T) -> u64,
) -> usize {
    let Some(first) = folder(&items[i]).filter(|_| bytes(&items[i]) < SMALL_FILE) else {
        return 1;
    };
    items[i..]
        .iter()
        .take(SMALL_RUN)
        .take_while(|item| bytes(item) < SMALL_FILE && folder(item) == Some(first))
        .count()
}

/// Applies `f` to every item on up to `jobs` threads; returns the results in
/// item order, or the error of the lowest-numbered item that failed.
pub fn map<T: Sync, R: Send>(
    items: &[T],
    jobs: usize,
    f: impl Fn(&T) -> Result<R> + Sync,
) -> Result<Vec<R>> {
    map_claiming(items, jobs, |_| 1, f)
}

/// [`map`], where a thread takes `run(i)` items (at least one) starting at
/// item `i` at once: runs of neighbouring small items (files of one folder)
/// then go to one thread, instead of threads contending for that folder's
/// lock item by item.
pub fn map_claiming<T: Sync, R: Send>(
    items: &[T],
    jobs: usize,
    run: impl Fn(usize) -> usize + Sync,
    f: impl Fn(&T) -> Result<R> + Sync,
) -> Result<Vec<R>> {
    map_claiming_with(items, jobs, run, || (), |_, item| f(item))
}

/// [`map_claiming`], where each thread has a `state` of its own that `f`
/// may change from item to item (folders kept open for the items of one
/// folder, say); it is dropped when the thread is done.
pub fn map_claiming_with<T: Sync, R: Send, S>(
    items: &[T],
    jobs: usize,
    run: impl Fn(usize) -> usize + Sync,
    state: impl Fn() -> S + Sync,
    f: impl Fn(&mut S, &T) -> Result<R> + Sync,
) -> Result<Vec<R>> {
    let jobs = jobs.clamp(1, items.len().max(1));
    if jobs == 1 {
        let mut state = state();
        return items.iter().map(|item| f(&mut state, item)).collect();
    }
    // A slot per item holds its result alone, not room for an error too
    // (an error is as big as many results): only the first error is kept.
    let slots: Mutex<Vec<Option<R>>> =
        Mutex::new(std::iter::repeat_with(|| None).take(items.len()).collect());
    let failure = FirstFailure::default();
    claim_each(items, jobs, run, state, |state, i, item| {
        match f(state, item) {
            Ok(r) => {
                slots.lock().expect("no worker panics holding the lock")[i] = Some(r);
                true
            }
            Err(e) => {
                failure.note(i, e);
                false
            }
        }
    });
    failure.into_result()?;
    // Collected in place (the slots' memory holds the results): many
    // results are not held twice. With no failure, every item was done.
    let slots = slots.into_inner().expect("workers finished");
    Ok(slots
        .into_iter()
        .map(|slot| slot.expect("every item is done when none failed"))
        .collect())
}

/// The error of the lowest-numbered item that failed, of items done on
/// several threads.
#[derive(Default)]
struct FirstFailure(Mutex<Option<(usize, crate::error::Error)>>);

impl FirstFailure {
    /// Notes that item `i` failed with `e`.
    fn note(&self, i: usize, e: crate::error::Error) {
        let mut first = self.0.lock().expect("no worker panics holding the lock");
        if first.as_ref().is_none_or(|(at, _)| i < *at) {
            *first = Some((i, e));
        }
    }

    /// The first error, if any item failed.
    fn into_result(self) -> Result<()> {
        match self.0.into_inner().expect("workers finished") {
            Some((_, e)) => Err(e),
            None => Ok(()),
        }
    }
}

/// [`map_claiming`] for work that returns nothing: no result is held per
/// item, only the error of the lowest-numbered item that failed (items
/// after it may have been done already, on another thread).
pub fn try_for_each_claiming<T: Sync>(
    items: &[T],
    jobs: usize,
    run: impl Fn(usize) -> usize + Sync,
    f: impl Fn(&T) -> Result<()> + Sync,
) -> Result<()> {
    try_for_each_claiming_with(items, jobs, run, || (), |(), item| f(item))
}

/// [`try_for_each_claiming`], where each thread has a `state` of its own
/// (see [`map_claiming_with`]): for work that puts its results in place
/// itself, so that many items hold no result slot each.
pub fn try_for_each_claiming_with<T: Sync, S>(
    items: &[T],
    jobs: usize,
    run: impl Fn(usize) -> usize + Sync,
    state: impl Fn() -> S + Sync,
    f: impl Fn(&mut S, &T) -> Result<()> + Sync,
) -> Result<()> {
    let jobs = jobs.clamp(1, items.len().max(1));
    if jobs == 1 {
        let mut state = state();
        return items.iter().try_for_each(|item| f(&mut state, item));
    }
    let failure = FirstFailure::default();
    claim_each(items, jobs, run, state, |state, i, item| {
        match f(state, item) {
            Ok(()) => true,
            Err(e) => {
                failure.note(i, e);
                false
            }
        }
    });
    failure.into_result()
}

/// The claiming loop of [`map_claiming_with`] on `jobs` (at least two)
/// threads: `visit` gets each item and its index, and returns whether it
/// went well; once one did not, no thread starts another item.
fn claim_each<T: Sync, S>(
    items: &[T],
    jobs: usize,
    run: impl Fn(usize) -> usize + Sync,
    state: impl Fn() -> S + Sync,
    visit: impl Fn(&mut S, usize, &T) -> bool + Sync,
) {
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    std::thread::scope(|scope| {
        for _ in 0..jobs {
            scope.spawn(|| {
                let mut state = state();
                'claims: loop {
                    let start = next.load(Ordering::Relaxed);
                    if start >= items.len() {
                        break;
                    }
                    let end = (start + run(start).max(1)).min(items.len());
                    if next
                        .compare_exchange(start, end, Ordering::Relaxed, Ordering::Relaxed)
                        .is_err()
                    {
                        continue;
                    }
                    for (i, item) in items.iter().enumerate().take(end).skip(start) {
                        if failed.load(Ordering::Relaxed) {
                            break 'claims;
                        }
                        if !visit(&mut state, i, item) {
                            failed.store(true, Ordering::Relaxed);
                        }
                    }
                }
            });
        }
    });
}

/// Applies `f` to every item in place on up to `jobs` threads, each taking
/// one contiguous share (for many items of about equal cost, such as the
/// `stat` of every file a walk found: nothing is collected or copied).
pub fn for_each_mut<T: Send>(items: &mut [T], jobs: usize, f: impl Fn(&mut T) + Sync) {
    for_each_mut_with(items, jobs, || (), |_, item| f(item));
}

/// [`for_each_mut`], where each thread has a `state` of its own that `f`
/// may change from item to item (see [`map_claiming_with`]).
pub fn for_each_mut_with<T: Send, S>(
    items: &mut [T],
    jobs: usize,
    state: impl Fn() -> S + Sync,
    f: impl Fn(&mut S, &mut T) + Sync,
) {
    let jobs = jobs.clamp(1, items.len().max(1));
    if jobs == 1 {
        let mut state = state();
        return items.iter_mut().for_each(|item| f(&mut state, item));
    }
    let share = items.len().div_ceil(jobs);
    std::thread::scope(|scope| {
        for part in items.chunks_mut(share) {
            let (f, state) = (&f, &state);
            scope.spawn(move || {
                let mut state = state();
                part.iter_mut().for_each(|item| f(&mut state, item));
            });
        }
    });
}

/// A count of cores to share between pools of threads that run at once
/// (the stores of a restore are staged side by side, each on threads of its
/// own): a thread holds a [`Permit`] while it works, so no more threads
/// than cores compete, and the longest task (a large database copied, then
/// checked) keeps a core to itself instead of taking turns with the files
/// of another store.
#[derive(Debug)]
pub struct Permits {
    free: Mutex<usize>,
    freed: std::sync::Condvar,
}

/// A held share of [`Permits`], given back when dropped.
#[derive(Debug)]
pub struct Permit<'a>(&'a Permits);

impl Permits {
    /// `n` permits (at least one).
    pub fn new(n: usize) -> Permits {
        Permits {
            free: Mutex::new(n.max(1)),
            freed: std::sync::Condvar::new(),
        }
    }

    /// Waits for a free permit and takes it.
    pub fn acquire(&self) -> Permit<'_> {
        let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
        while *free == 0 {
            free = self.freed.wait(free).unwrap_or_else(|e| e.into_inner());
        }
        *free -= 1;
        Permit(self)
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        *self.0.free.lock().unwrap_or_else(|e| e.into_inner()) += 1;
        self.0.freed.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;

    #[test]
    fn permits_never_let_more_threads_work_at_once_than_there_are() {
        let permits = Permits::new(2);
        let (working, most) = (AtomicUsize::new(0), AtomicUsize::new(0));
        let items: Vec<u32> = (0..40).collect();
        // Two pools of four threads each, as two stores staged side by side.
        std::thread::scope(|scope| {
            for pool in items.chunks(20) {
                let (permits, working, most) = (&permits, &working, &most);
                scope.spawn(move || {
                    try_for_each_claiming(
                        pool,
                        4,
                        |_| 1,
                        |_| {
                            let _permit = permits.acquire();
                            let now = working.fetch_add(1, Ordering::SeqCst) + 1;
                            most.fetch_max(now, Ordering::SeqCst);
                            std::thread::sleep(std::time::Duration::from_millis(2));
                            working.fetch_sub(1, Ordering::SeqCst);
                            Ok(())
                        },
                    )
                    .unwrap();
                });
            }
        });
        assert_eq!(most.load(Ordering::SeqCst), 2);
        // All given back: both can be taken again at once.
        let (_a, _b) = (permits.acquire(), permits.acquire());
        assert_eq!(*permits.free.lock().unwrap(), 0);
    }

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

    #[test]
    fn try_for_each_visits_every_item_once_and_the_first_error_wins() {
        let items: Vec<usize> = (0..200).collect();
        let seen = Mutex::new(vec![0u8; items.len()]);
        let run = |i| folder_run(&items, i, |_| Some(std::path::Path::new("f")), |_| 1);
        try_for_each_claiming(&items, 2, run, |&i| {
            seen.lock().unwrap()[i] += 1;
            Ok(())
        })
        .unwrap();
        assert!(seen.into_inner().unwrap().iter().all(|&n| n == 1));
        let err = try_for_each_claiming(
            &items,
            3,
            |_| 1,
            |&i| match i {
                40 | 90 => Err(Error::Usage(format!("item {i}"))),
                _ => Ok(()),
            },
        )
        .unwrap_err();
        assert_eq!(err.to_string(), "item 40");
    }

    #[test]
    fn a_folder_run_is_the_small_files_of_one_folder_in_a_row() {
        use std::path::Path;
        let items = [
            ("a", 1),
            ("a", 1),
            ("a", SMALL_FILE),
            ("a", 1),
            ("b", 1),
            ("", 1),
        ];
        fn folder<'a>((f, _): &'a (&'static str, u64)) -> Option<&'a Path> {
            (!f.is_empty()).then(|| Path::new(*f))
        }
        let runs: Vec<usize> = (0..items.len())
            .map(|i| folder_run(&items, i, folder, |(_, b)| *b))
            .collect();
        assert_eq!(runs, [2, 1, 1, 1, 1, 1]);
    }

    #[test]
    fn every_item_is_changed_once_in_place() {
        for jobs in [1, 2, 3, 8] {
            let mut items: Vec<u64> = (0..1001).collect();
            for_each_mut(&mut items, jobs, |i| *i = *i * 3 + 1);
            assert_eq!(items, (0..1001).map(|i| i * 3 + 1).collect::<Vec<_>>());
        }
        let mut none: Vec<u64> = Vec::new();
        for_each_mut(&mut none, 4, |i| *i += 1);
        assert!(none.is_empty());
    }

    #[test]
    fn runs_of_items_go_to_one_thread_and_keep_their_order() {
        let items: Vec<u64> = (0..1000).collect();
        let out = map_claiming(
            &items,
            2,
            |i| if i < 10 { 1 } else { 64 },
            |&i| Ok((i, std::thread::current().id())),
        )
        .unwrap();
        assert_eq!(out.iter().map(|r| r.0).collect::<Vec<_>>(), items);
        // Every run of 64 after the first ten items ran on a single thread.
        for run in out[10..].chunks(64) {
            assert!(run.iter().all(|r| r.1 == run[0].1), "a run was split");
        }
    }

    #[test]
    fn each_thread_keeps_its_own_state_across_its_items() {
        use std::sync::atomic::AtomicUsize;
        for jobs in [1, 2, 4] {
            let made = AtomicUsize::new(0);
            let items: Vec<u64> = (0..500).collect();
            // The state counts the items its thread did before this one.
            let out = map_claiming_with(
                &items,
                jobs,
                |_| 7,
                || {
                    made.fetch_add(1, Ordering::Relaxed);
                    0u64
                },
                |seen, &i| {
                    *seen += 1;
                    Ok((i, *seen))
                },
            )
            .unwrap();
            assert_eq!(out.iter().map(|r| r.0).collect::<Vec<_>>(), items);
            let states = made.load(Ordering::Relaxed);
            assert!(states <= jobs, "{states} states for {jobs} jobs");
            // A state counts 1, 2, 3... over its thread's items: a count
            // of 1 marks a state's first item (a thread may find nothing
            // left to claim, so some states may have none).
            let firsts = out.iter().filter(|r| r.1 == 1).count();
            assert!((1..=states).contains(&firsts), "{firsts} of {states}");
            // Within a run of 7 claimed together, the count goes up by one.
            assert!(out
                .chunks(7)
                .all(|run| run.windows(2).all(|w| w[1].1 == w[0].1 + 1)));
            let mut items: Vec<u64> = (0..500).collect();
            for_each_mut_with(
                &mut items,
                jobs,
                || 0u64,
                |seen, i| {
                    *seen += 1;
                    *i = *seen;
                },
            );
            assert_eq!(items.iter().filter(|&&n| n == 1).count(), jobs.min(500));
        }
    }
}
