//! limits tests.
