//! Routing: Postfix trivial-rewrite semantics (being written).
