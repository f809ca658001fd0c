//! A small DNS server for tests (being written).
