//! STUB
use crate::error::Result;
pub struct Status {
    pub in_rotation: bool,
}
impl Status {
    pub fn describe(&self) -> String {
        String::new()
    }
}
pub fn status(_rig: &str) -> Result<Option<Status>> {
    Ok(None)
}
pub fn in_rotation(_rig: &str) -> Result<bool> {
    Ok(true)
}
pub fn mark_out(_rig: &str, _reason: &str, _run: &str) -> Result<()> {
    Ok(())
}
pub fn mark_in(_rig: &str, _run: &str) -> Result<()> {
    Ok(())
}
