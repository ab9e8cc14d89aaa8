//! The MPIJob API: types, defaults, validation and the pod contract.
//!
//! Pure: nothing here does I/O, so the controller, the agent and their tests
//! share one definition of what a valid job is.

pub mod contract;
