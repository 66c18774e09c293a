//! Writing a board's card through its SD muxer: switch to the host, wait for the card to
//! settle, flash and verify, switch back to the board.

use std::path::Path;

use crate::device::{Media, MuxSide};
use crate::error::{Error, Result};
use crate::flash::{flash, FlashOptions, FlashReport, Progress};

/// Flashes `image` onto the card behind `media` and hands the card back to the board.
/// `tune` adjusts the flash options (bmap, cancel) once the target is known. On failure the
/// card is still switched back to the board side when possible, so the rig stays usable;
/// the error from the flash wins.
pub fn write_card(
    media: &mut dyn Media,
    image: &Path,
    tune: &dyn Fn(&mut FlashOptions),
    progress: &dyn Fn(Progress),
) -> Result<FlashReport> {
    let who = media.describe();
    media.switch(MuxSide::Host).map_err(|e| context(&who, e))?;
    let flashed = media.host_device().and_then(|device| {
        let mut opts = FlashOptions::new(image, device);
        tune(&mut opts);
        flash(&opts, progress)
    });
    let back = media.switch(MuxSide::Dut).map_err(|e| context(&who, e));
    let report = flashed?;
    back?;
    Ok(report)
}

fn context(who: &str, e: Error) -> Error {
    match e {
        Error::Infra(m) => Error::Infra(format!("{who}: {m}")),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    /// A muxer whose card is a file; records the sides it was switched to.
    struct FakeMux {
        card: PathBuf,
        sides: Vec<MuxSide>,
    }

    impl Media for FakeMux {
        fn switch(&mut self, side: MuxSide) -> Result<()> {
            self.sides.push(side);
            Ok(())
        }
        fn host_device(&self) -> Result<PathBuf> {
            Ok(self.card.clone())
        }
        fn describe(&self) -> String {
            "fake mux".into()
        }
    }

    #[test]
    fn card_fake_host_flash_then_dut() {
        let dir = tempfile::tempdir().unwrap();
        let img = dir.path().join("os.img");
        std::fs::write(&img, vec![9u8; 3 * 4096 + 17]).unwrap();
        let mut mux = FakeMux {
            card: dir.path().join("card"),
            sides: Vec::new(),
        };
        let r = write_card(&mut mux, &img, &|_| {}, &|_| {}).unwrap();
        assert_eq!(mux.sides, vec![MuxSide::Host, MuxSide::Dut]);
        assert_eq!(r.image_size, 3 * 4096 + 17);
        assert_eq!(
            std::fs::read(&mux.card).unwrap(),
            std::fs::read(&img).unwrap()
        );
    }

    #[test]
    fn card_fake_failure_still_hands_the_card_back() {
        let dir = tempfile::tempdir().unwrap();
        let mut mux = FakeMux {
            card: dir.path().join("card"),
            sides: Vec::new(),
        };
        let err = write_card(&mut mux, &dir.path().join("none.img"), &|_| {}, &|_| {}).unwrap_err();
        assert!(matches!(err, Error::Input(_)));
        assert_eq!(mux.sides, vec![MuxSide::Host, MuxSide::Dut]);
    }
}
