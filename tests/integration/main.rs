//! Integration tests: one binary, driving the real `retouch` executable and library.

mod harness;

mod cli_run;
