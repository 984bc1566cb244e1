//! tools tests.
