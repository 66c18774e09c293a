//! STUB (replaced by the real module)
use crate::error::Result;
use std::time::Duration;
pub struct Lease {
    name: String,
}
pub struct LeaseInfo {
    pub holder: String,
    pub what: String,
}
impl Lease {
    pub fn acquire_any(
        names: &[String],
        _what: &str,
        _wait: Duration,
        _say: &mut dyn FnMut(&str),
    ) -> Result<Lease> {
        Ok(Lease {
            name: names[0].clone(),
        })
    }
    pub fn name(&self) -> &str {
        &self.name
    }
    pub fn lost(&self) -> bool {
        false
    }
}
pub fn holder(_name: &str) -> Result<Option<LeaseInfo>> {
    Ok(None)
}
