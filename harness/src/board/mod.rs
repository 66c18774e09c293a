//! Board hardware drivers: SD muxers, power switches, serial ports.
//!
//! Each driver implements one role from [`crate::device`] and is generic over its transport,
//! so its tests check the exact bytes or commands it sends against a `Fake…` transport.
//! [`spec`] holds the rig file's hardware section and opens the drivers it names;
//! [`BoardTarget`] runs the board flow on them.
//!
//! | role                      | drivers                                         |
//! |---------------------------|-------------------------------------------------|
//! | [`Media`](crate::device::Media)             | [`UsbSdMux`], [`SdWire`], [`FileMedia`] |
//! | [`Power`](crate::device::Power)             | [`Relay`], [`Uhubctl`], [`CommandPower`], [`QmpPower`] |
//! | [`ConsolePort`](crate::device::ConsolePort) | [`SerialConsole`]             |

pub mod address;
pub mod card;
pub mod command_power;
pub mod file_media;
pub mod qmp_power;
pub mod relay;
pub mod rig;
pub mod run;
pub mod sdwire;
pub mod serial;
pub mod sg;
pub mod spec;
pub mod target;
pub mod uhubctl;
pub mod usb2642;
pub mod usbsdmux;

pub use card::write_card;
pub use command_power::CommandPower;
pub use file_media::FileMedia;
pub use qmp_power::QmpPower;
pub use relay::Relay;
pub use sdwire::SdWire;
pub use serial::SerialConsole;
pub use spec::{AddressSpec, ConsoleSpec, MediaSpec, PowerSpec};
pub use target::BoardTarget;
pub use uhubctl::Uhubctl;
pub use usbsdmux::UsbSdMux;
