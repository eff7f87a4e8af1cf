//! The virtio console's control messages (virtio 1.2 §5.3.6.2,
//! `struct virtio_console_control`): an 8-byte little-endian header —
//! port id (`le32`), event (`le16`), value (`le16`) — followed, for
//! [`ControlEvent::PortName`], by the port's name.
//!
//! A view and a representation, smoltcp style: [`ControlMessage::parse`]
//! reads a received buffer, [`ControlMessage::emit`] writes one to send.
//!
//! ```
//! use agent_baremetal::control::{ControlEvent, ControlMessage};
//!
//! let bytes = b"\x01\x00\x00\x00\x07\x00\x01\x00org.qemu.guest_agent.0";
//! let (msg, name) = ControlMessage::parse(bytes).unwrap();
//! assert_eq!(msg, ControlMessage { id: 1, event: ControlEvent::PortName, value: 1 });
//! assert_eq!(name, b"org.qemu.guest_agent.0");
//!
//! let ready = ControlMessage::new(1, ControlEvent::PortReady, 1);
//! assert_eq!(ready.emit(), *b"\x01\x00\x00\x00\x03\x00\x01\x00");
//! ```

/// Size of the control message header.
pub const HEADER_LEN: usize = 8;

/// The `event` of a control message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ControlEvent {
    /// Driver → device: the driver is ready (value 1) or failed (0).
    DeviceReady,
    /// Device → driver: port `id` exists.
    DeviceAdd,
    /// Device → driver: port `id` is gone.
    DeviceRemove,
    /// Driver → device: port `id` is set up (value 1) or failed (0).
    PortReady,
    /// Device → driver: port `id` is a console.
    ConsolePort,
    /// Device → driver: the console was resized (payload: rows, cols).
    Resize,
    /// Both ways: port `id` opened (value 1) or closed (0) on the
    /// sender's side — the host's connection, or the guest's use.
    PortOpen,
    /// Device → driver: port `id`'s name follows the header.
    PortName,
    /// An event this driver does not know; ignored.
    Unknown(u16),
}

impl ControlEvent {
    /// The event's number on the wire.
    pub const fn code(self) -> u16 {
        match self {
            ControlEvent::DeviceReady => 0,
            ControlEvent::DeviceAdd => 1,
            ControlEvent::DeviceRemove => 2,
            ControlEvent::PortReady => 3,
            ControlEvent::ConsolePort => 4,
            ControlEvent::Resize => 5,
            ControlEvent::PortOpen => 6,
            ControlEvent::PortName => 7,
            ControlEvent::Unknown(code) => code,
        }
    }

    /// The event with number `code`.
    pub const fn from_code(code: u16) -> Self {
        match code {
            0 => ControlEvent::DeviceReady,
            1 => ControlEvent::DeviceAdd,
            2 => ControlEvent::DeviceRemove,
            3 => ControlEvent::PortReady,
            4 => ControlEvent::ConsolePort,
            5 => ControlEvent::Resize,
            6 => ControlEvent::PortOpen,
            7 => ControlEvent::PortName,
            other => ControlEvent::Unknown(other),
        }
    }
}

/// One control message's header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ControlMessage {
    /// The port the message is about (unused for `DeviceReady`).
    pub id: u32,
    /// What happened.
    pub event: ControlEvent,
    /// The event's argument (1/0 for ready and open events).
    pub value: u16,
}

impl ControlMessage {
    /// A message.
    pub const fn new(id: u32, event: ControlEvent, value: u16) -> Self {
        ControlMessage { id, event, value }
    }

    /// Read a received buffer: the header and the payload after it, or
    /// `None` if the buffer is shorter than a header.
    pub fn parse(bytes: &[u8]) -> Option<(ControlMessage, &[u8])> {
        let (header, payload) = bytes.split_first_chunk::<HEADER_LEN>()?;
        let [i0, i1, i2, i3, e0, e1, v0, v1] = *header;
        let msg = ControlMessage {
            id: u32::from_le_bytes([i0, i1, i2, i3]),
            event: ControlEvent::from_code(u16::from_le_bytes([e0, e1])),
            value: u16::from_le_bytes([v0, v1]),
        };
        Some((msg, payload))
    }

    /// The message's bytes on the wire.
    pub fn emit(&self) -> [u8; HEADER_LEN] {
        let [i0, i1, i2, i3] = self.id.to_le_bytes();
        let [e0, e1] = self.event.code().to_le_bytes();
        let [v0, v1] = self.value.to_le_bytes();
        [i0, i1, i2, i3, e0, e1, v0, v1]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_event_round_trips() {
        for code in 0..=9u16 {
            let msg = ControlMessage::new(0x0102_0304, ControlEvent::from_code(code), 0xbeef);
            let bytes = msg.emit();
            assert_eq!(bytes[..4], [4, 3, 2, 1]);
            assert_eq!(u16::from_le_bytes([bytes[4], bytes[5]]), code);
            assert_eq!(bytes[6..], [0xef, 0xbe]);
            assert_eq!(ControlMessage::parse(&bytes), Some((msg, &b""[..])));
            assert_eq!(msg.event.code(), code);
        }
        assert_eq!(ControlEvent::from_code(8), ControlEvent::Unknown(8));
    }

    #[test]
    fn short_buffers_and_payloads() {
        assert_eq!(ControlMessage::parse(b"\x01\x00\x00\x00\x06\x00\x01"), None);
        assert_eq!(ControlMessage::parse(b""), None);
        // DEVICE_ADD for port 2, as QEMU sends it.
        let (msg, rest) = ControlMessage::parse(b"\x02\x00\x00\x00\x01\x00\x01\x00").unwrap();
        assert_eq!(msg, ControlMessage::new(2, ControlEvent::DeviceAdd, 1));
        assert!(rest.is_empty());
        // A resize carries rows and columns.
        let (msg, rest) =
            ControlMessage::parse(b"\x00\x00\x00\x00\x05\x00\x00\x00\x18\x00\x50\x00").unwrap();
        assert_eq!(msg.event, ControlEvent::Resize);
        assert_eq!(rest, b"\x18\x00\x50\x00");
    }
}
