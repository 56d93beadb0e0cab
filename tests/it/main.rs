//! End-to-end scenarios against the local stack.
