//! client tests.
