//! Board hardware drivers: SD muxers, power switches, serial ports.
