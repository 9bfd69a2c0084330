//! scheduler

pub mod budget;
