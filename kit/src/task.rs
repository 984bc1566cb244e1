//! Tasks owned by what started them: an [`OwnedTask`] aborts its task when dropped, so a
//! service's long-lived tasks stop with the value that holds them, never outlive it.

use tokio::task::JoinHandle;

/// A spawned task that is aborted when this handle is dropped.
#[derive(Debug)]
pub struct OwnedTask(Option<JoinHandle<()>>);

impl OwnedTask {
    /// Spawns `future` on the current runtime.
    pub fn spawn(future: impl Future<Output = ()> + Send + 'static) -> OwnedTask {
        OwnedTask(Some(tokio::spawn(future)))
    }

    /// Waits for the task to end by itself.
    pub async fn join(mut self) {
        if let Some(handle) = self.0.take() {
            let _ = handle.await;
        }
    }
}

impl From<JoinHandle<()>> for OwnedTask {
    fn from(handle: JoinHandle<()>) -> OwnedTask {
        OwnedTask(Some(handle))
    }
}

impl Drop for OwnedTask {
    fn drop(&mut self) {
        if let Some(handle) = &self.0 {
            handle.abort();
        }
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
