//! Datastore behaviour through its API.
