//! Tasks owned by what started them: an [`OwnedTask`] aborts its task when dropped, so a
//! service's long-lived tasks stop with the value that holds them, never outlive it.

use tokio::task::JoinHandle;

/// A spawned task that is aborted when this handle is dropped.
#[derive(Debug)]
pub struct OwnedTask(JoinHandle<()>);

impl OwnedTask {
    /// Spawns `future` on the current runtime.
    pub fn spawn(future: impl Future<Output = ()> + Send + 'static) -> OwnedTask {
        OwnedTask(tokio::spawn(future))
    }
}

impl OwnedTask {
    /// Waits until the task ends by itself (an orderly stop); dropping this future (a timeout)
    /// aborts the task.
    pub async fn finished(mut self) {
        let _ = (&mut self.0).await;
    }
}

impl From<JoinHandle<()>> for OwnedTask {
    fn from(handle: JoinHandle<()>) -> OwnedTask {
        OwnedTask(handle)
    }
}

impl Drop for OwnedTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_dropped_handle_stops_its_task() {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<()>(1);
        let task = OwnedTask::spawn(async move {
            let _tx = tx;
            std::future::pending::<()>().await;
        });
        drop(task);
        // The sender is dropped with the aborted task: the channel closes.
        assert_eq!(rx.recv().await, None);
    }

    #[tokio::test]
    async fn a_task_waited_for_runs_to_its_end_and_a_timeout_aborts_it() {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<u8>(1);
        OwnedTask::spawn(async move { tx.send(7).await.unwrap() }).finished().await;
        assert_eq!(rx.recv().await, Some(7));
        let (tx, mut rx) = tokio::sync::mpsc::channel::<()>(1);
        let stuck = OwnedTask::spawn(async move {
            let _tx = tx;
            std::future::pending::<()>().await;
        });
        let waited = tokio::time::timeout(std::time::Duration::from_millis(10), stuck.finished());
        assert!(waited.await.is_err());
        assert_eq!(rx.recv().await, None, "the timed-out task was aborted");
    }
}
