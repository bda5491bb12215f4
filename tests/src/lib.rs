//! Integration-test harness (owner: tests helper).
