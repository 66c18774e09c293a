//! Board hardware drivers: SD muxers, power switches, serial ports.
//!
//! Each driver implements one role from [`crate::device`] and is generic over its transport,
//! so its tests check the exact bytes or commands it sends against a `Fake…` transport.
//!
//! | role                      | drivers                                         |
//! |---------------------------|-------------------------------------------------|
//! | [`Media`](crate::device::Media)             | [`UsbSdMux`], [`SdWire`]      |
//! | [`Power`](crate::device::Power)             | [`Relay`], [`Uhubctl`], [`CommandPower`] |
//! | [`ConsolePort`](crate::device::ConsolePort) | [`SerialConsole`]             |

pub mod command_power;
pub mod relay;
pub mod run;
pub mod sdwire;
pub mod serial;
pub mod sg;
pub mod uhubctl;
pub mod usbsdmux;

pub use command_power::CommandPower;
pub use relay::Relay;
pub use sdwire::SdWire;
pub use serial::SerialConsole;
pub use uhubctl::Uhubctl;
pub use usbsdmux::UsbSdMux;
