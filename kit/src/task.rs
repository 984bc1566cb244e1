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
}
