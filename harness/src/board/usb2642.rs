//! The auxiliary I2C bus of a Microchip USB2642 card reader, reached with the reader's vendor
//! SCSI command 0xCF through `/dev/sg*` (the USB-SD-Mux's GPIO expander sits on it).

use crate::error::Result;

use super::sg::ScsiTransport;

/// The USB2642's vendor SCSI opcode.
const OPCODE: u8 = 0xCF;
/// Vendor action: I2C write.
const I2C_WRITE: u8 = 0x23;
/// Vendor action: I2C write, then read.
const I2C_WRITE_READ: u8 = 0x22;
/// Every I2C transfer moves a 512-byte data phase, as the vendor tool does.
const DATA_PHASE: usize = 512;
/// The most bytes a write-then-read can write (they ride in the CDB).
const WRITE_READ_MAX: usize = 9;

/// The I2C bridge of a USB2642 reader, over SCSI.
pub struct Usb2642<T> {
    scsi: T,
}

impl<T: ScsiTransport> Usb2642<T> {
    /// Wraps a SCSI transport.
    pub fn new(scsi: T) -> Self {
        Usb2642 { scsi }
    }

    /// Writes `data` (up to 512 bytes) to the I2C device at 7-bit address `addr`.
    pub fn i2c_write(&mut self, addr: u8, data: &[u8]) -> Result<()> {
        let len = data.len().min(DATA_PHASE);
        let mut cdb = [0u8; 16];
        cdb[..7].copy_from_slice(&[
            OPCODE,
            I2C_WRITE,
            addr << 1,
            0x00,
            (len >> 8) as u8,
            len as u8,
            0x00,
        ]);
        let mut phase = [0u8; DATA_PHASE];
        phase[..len].copy_from_slice(&data[..len]);
        self.scsi.send(&cdb, &phase)
    }

    /// Writes up to 9 bytes to `addr`, then reads `len` (up to 512) bytes back.
    pub fn i2c_write_read(&mut self, addr: u8, write: &[u8], len: usize) -> Result<Vec<u8>> {
        let (wlen, len) = (write.len().min(WRITE_READ_MAX), len.min(DATA_PHASE));
        let mut cdb = [0u8; 16];
        cdb[..7].copy_from_slice(&[
            OPCODE,
            I2C_WRITE_READ,
            addr << 1,
            (addr << 1) | 1,
            (len >> 8) as u8,
            len as u8,
            wlen as u8,
        ]);
        cdb[7..7 + wlen].copy_from_slice(&write[..wlen]);
        let mut phase = [0u8; DATA_PHASE];
        self.scsi.receive(&cdb, &mut phase)?;
        Ok(phase[..len].to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Recorder {
        sent: Vec<([u8; 16], Vec<u8>)>,
    }

    impl ScsiTransport for Recorder {
        fn send(&mut self, cdb: &[u8; 16], data: &[u8]) -> Result<()> {
            self.sent.push((*cdb, data.to_vec()));
            Ok(())
        }
        fn receive(&mut self, cdb: &[u8; 16], buf: &mut [u8]) -> Result<()> {
            self.sent.push((*cdb, Vec::new()));
            buf[0] = 0x5A;
            Ok(())
        }
    }

    // The layouts of usbsdmux's `_USB2642I2cWriteStruct` / `_USB2642I2cReadStruct`
    // (linux-automation/usbsdmux usbsdmux/usb2642.py): opcode, action, addresses, length.

    #[test]
    fn a_write_is_one_cdb_and_a_512_byte_data_phase() {
        let mut i2c = Usb2642::new(Recorder::default());
        i2c.i2c_write(0x41, &[0x01, 0x0B]).unwrap();
        let (cdb, data) = &i2c.scsi.sent[0];
        assert_eq!(
            cdb,
            &[0xCF, 0x23, 0x82, 0x00, 0x00, 0x02, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0]
        );
        assert_eq!(data.len(), 512);
        assert_eq!(&data[..2], &[0x01, 0x0B]);
        assert!(data[2..].iter().all(|&b| b == 0));
    }

    #[test]
    fn a_write_read_carries_the_written_bytes_in_the_cdb() {
        let mut i2c = Usb2642::new(Recorder::default());
        assert_eq!(i2c.i2c_write_read(0x41, &[0x00], 1).unwrap(), vec![0x5A]);
        assert_eq!(
            i2c.scsi.sent[0].0,
            [0xCF, 0x22, 0x82, 0x83, 0x00, 0x01, 0x01, 0x00, 0, 0, 0, 0, 0, 0, 0, 0]
        );
        // At most 9 bytes fit; a 512-byte read is 0x0200.
        let mut i2c = Usb2642::new(Recorder::default());
        i2c.i2c_write_read(0x20, &[7; 12], 600).unwrap();
        let cdb = i2c.scsi.sent[0].0;
        assert_eq!(&cdb[..7], &[0xCF, 0x22, 0x40, 0x41, 0x02, 0x00, 0x09]);
        assert_eq!(&cdb[7..], &[7; 9]);
    }
}
