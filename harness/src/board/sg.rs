//! The Linux SCSI generic interface: one SCSI command through the `SG_IO` ioctl on `/dev/sg*`.
//!
//! The one `unsafe` block left is that ioctl: no crate offers `SG_IO` as a safe call, since the
//! kernel reads and writes through the raw pointers in the header. The block is kept to the
//! call itself; the pointers come from borrowed slices that outlive it.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Sends SCSI commands with a data phase: the seam the USB-SD-Mux driver is tested through.
pub trait ScsiTransport: Send {
    /// Sends `cdb` and `data` to the device.
    fn send(&mut self, cdb: &[u8; 16], data: &[u8]) -> Result<()>;
    /// Sends `cdb` and fills `buf` from the device.
    fn receive(&mut self, cdb: &[u8; 16], buf: &mut [u8]) -> Result<()>;
}

/// `struct sg_io_hdr` from `<scsi/sg.h>`.
#[repr(C)]
struct SgIoHdr {
    interface_id: libc::c_int,
    dxfer_direction: libc::c_int,
    cmd_len: u8,
    mx_sb_len: u8,
    iovec_count: u16,
    dxfer_len: libc::c_uint,
    dxferp: *mut libc::c_void,
    cmdp: *const u8,
    sbp: *mut u8,
    timeout: libc::c_uint,
    flags: libc::c_uint,
    pack_id: libc::c_int,
    usr_ptr: *mut libc::c_void,
    status: u8,
    masked_status: u8,
    msg_status: u8,
    sb_len_wr: u8,
    host_status: u16,
    driver_status: u16,
    resid: libc::c_int,
    duration: libc::c_uint,
    info: libc::c_uint,
}

const SG_IO: rustix::ioctl::Opcode = 0x2285;
const SG_DXFER_TO_DEV: libc::c_int = -2;
const SG_DXFER_FROM_DEV: libc::c_int = -3;

/// An open `/dev/sg*` device.
pub struct SgDevice {
    path: PathBuf,
    file: File,
}

impl SgDevice {
    /// Opens `path`; a missing device or missing permission is an input error.
    pub fn open(path: &Path) -> Result<SgDevice> {
        let shown = path.display();
        if !path.exists() {
            return Err(Error::input(format!(
                "SCSI generic device {shown} does not exist"
            )));
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(|e| Error::input(format!("cannot open {shown}: {e}")))?;
        Ok(SgDevice {
            path: path.to_path_buf(),
            file,
        })
    }

    fn io(&mut self, cdb: &[u8; 16], dir: libc::c_int, data: &mut [u8]) -> Result<()> {
        let mut sense = [0u8; 64];
        let mut hdr = SgIoHdr {
            interface_id: b'S' as libc::c_int,
            dxfer_direction: dir,
            cmd_len: cdb.len() as u8,
            mx_sb_len: sense.len() as u8,
            iovec_count: 0,
            dxfer_len: data.len() as libc::c_uint,
            dxferp: data.as_mut_ptr().cast(),
            cmdp: cdb.as_ptr(),
            sbp: sense.as_mut_ptr(),
            timeout: 3000,
            flags: 0,
            pack_id: 0,
            usr_ptr: std::ptr::null_mut(),
            status: 0,
            masked_status: 0,
            msg_status: 0,
            sb_len_wr: 0,
            host_status: 0,
            driver_status: 0,
            resid: 0,
            duration: 0,
            info: 0,
        };
        // SAFETY: SG_IO takes a `struct sg_io_hdr`, which `SgIoHdr` lays out exactly (tested
        // below), and every pointer in it borrows a live buffer of its stated length (`cdb`,
        // `sense`, `data`) for the whole call.
        let done = unsafe {
            rustix::ioctl::ioctl(
                &self.file,
                rustix::ioctl::Updater::<SG_IO, SgIoHdr>::new(&mut hdr),
            )
        };
        if let Err(e) = done {
            let e = std::io::Error::from(e);
            return Err(Error::infra(format!(
                "SG_IO on {} failed: {e}",
                self.path.display()
            )));
        }
        if hdr.status != 0 || hdr.host_status != 0 {
            return Err(Error::infra(format!(
                "SCSI command {:#04x} on {} failed (status {:#x}, host status {:#x})",
                cdb[0],
                self.path.display(),
                hdr.status,
                hdr.host_status
            )));
        }
        Ok(())
    }
}

impl ScsiTransport for SgDevice {
    fn send(&mut self, cdb: &[u8; 16], data: &[u8]) -> Result<()> {
        let mut buf = data.to_vec();
        self.io(cdb, SG_DXFER_TO_DEV, &mut buf)
    }

    fn receive(&mut self, cdb: &[u8; 16], buf: &mut [u8]) -> Result<()> {
        self.io(cdb, SG_DXFER_FROM_DEV, buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_matches_the_kernel_layout() {
        // 88 bytes on 64-bit, 64 on 32-bit, as <scsi/sg.h> lays it out.
        let want = if cfg!(target_pointer_width = "64") {
            88
        } else {
            64
        };
        assert_eq!(std::mem::size_of::<SgIoHdr>(), want);
    }

    #[test]
    fn a_missing_device_is_an_input_error() {
        let err = SgDevice::open(Path::new("/dev/sg-none")).err().unwrap();
        assert!(matches!(err, Error::Input(_)));
        assert_eq!(
            err.to_string(),
            "SCSI generic device /dev/sg-none does not exist"
        );
    }
}
