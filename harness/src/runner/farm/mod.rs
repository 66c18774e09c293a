//! Running a farm: each target's worker ([`worker`]) takes its lease, gets its device from the
//! factory ([`devices`]) and takes jobs from one queue ([`schedule`]) until none is left; the
//! decisions (retry, which target, leaving the run or the rotation, blame) are pure functions
//! in [`policy`].

pub mod devices;
pub mod policy;
pub mod schedule;
pub mod worker;
