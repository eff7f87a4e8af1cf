//! The port table: what the device has told the driver about its ports
//! over the control queue, and what the driver must answer. Sans-IO: feed
//! it received control messages with [`PortTable::apply`], act on the
//! returned [`Effect`].
//!
//! ```
//! use agent_baremetal::control::{ControlEvent, ControlMessage};
//! use agent_baremetal::ports::{Effect, PortTable};
//!
//! let mut table = PortTable::<4>::new();
//! // The device adds port 1; the driver answers PORT_READY.
//! let add = ControlMessage::new(1, ControlEvent::DeviceAdd, 1);
//! assert_eq!(
//!     table.apply(add, b""),
//!     Effect::Send(ControlMessage::new(1, ControlEvent::PortReady, 1))
//! );
//! // Then names it.
//! let name = ControlMessage::new(1, ControlEvent::PortName, 1);
//! table.apply(name, b"org.qemu.guest_agent.0");
//! assert_eq!(table.find("org.qemu.guest_agent.0"), Some(1));
//! ```

use crate::control::{ControlEvent, ControlMessage};

/// Longest port name kept; longer names are truncated (and so not found
/// by their full name).
pub const MAX_NAME_LEN: usize = 120;

/// What the driver knows about one port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortState {
    present: bool,
    console: bool,
    host_connected: bool,
    name: [u8; MAX_NAME_LEN],
    name_len: u8,
}

impl PortState {
    const ABSENT: PortState = PortState {
        present: false,
        console: false,
        host_connected: false,
        name: [0; MAX_NAME_LEN],
        name_len: 0,
    };

    /// Whether the device has added this port (and not removed it).
    pub fn is_present(&self) -> bool {
        self.present
    }

    /// Whether the device nominated this port as a console.
    pub fn is_console(&self) -> bool {
        self.console
    }

    /// Whether a host-side client has the port open.
    pub fn is_host_connected(&self) -> bool {
        self.host_connected
    }

    /// The port's name, as sent by the device up to a NUL (empty until
    /// named).
    pub fn name(&self) -> &[u8] {
        self.name.get(..usize::from(self.name_len)).unwrap_or(&[])
    }
}

/// What the driver must do after a control message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Effect {
    /// Nothing.
    None,
    /// Send this control message to the device.
    Send(ControlMessage),
    /// The host side of port `id` was opened (`true`) or closed.
    Host {
        /// The port.
        id: u32,
        /// Whether a host client is now connected.
        connected: bool,
    },
    /// Port `id` was removed.
    Removed(u32),
    /// The message was about a port beyond the table's capacity, or made
    /// no sense; it was ignored.
    Ignored(ControlMessage),
}

/// The state of up to `N` ports, ids `0..N`.
#[derive(Clone, Debug)]
pub struct PortTable<const N: usize> {
    ports: [PortState; N],
}

impl<const N: usize> Default for PortTable<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> PortTable<N> {
    /// A table without ports.
    pub const fn new() -> Self {
        PortTable {
            ports: [PortState::ABSENT; N],
        }
    }

    /// A table with only port 0, connected: a device without MULTIPORT.
    pub fn single_port() -> Self {
        let mut table = Self::new();
        if let Some(port) = table.ports.first_mut() {
            port.present = true;
            port.console = true;
            port.host_connected = true;
        }
        table
    }

    /// Port `id`'s state, if `id` is within the table.
    pub fn get(&self, id: u32) -> Option<&PortState> {
        self.ports.get(usize::try_from(id).ok()?)
    }

    /// Present ports: `(id, state)`.
    pub fn iter(&self) -> impl Iterator<Item = (u32, &PortState)> + '_ {
        (0u32..)
            .zip(self.ports.iter())
            .filter(|(_, port)| port.present)
    }

    /// The id of the present port named `name`.
    pub fn find(&self, name: &str) -> Option<u32> {
        self.iter()
            .find(|(_, port)| port.name() == name.as_bytes())
            .map(|(id, _)| id)
    }

    /// Apply a message received from the device (`payload` is what
    /// followed its header).
    pub fn apply(&mut self, msg: ControlMessage, payload: &[u8]) -> Effect {
        let Some(port) = usize::try_from(msg.id)
            .ok()
            .and_then(|i| self.ports.get_mut(i))
        else {
            return Effect::Ignored(msg);
        };
        match msg.event {
            ControlEvent::DeviceAdd => {
                // A re-add starts afresh (the device may reuse ids).
                *port = PortState::ABSENT;
                port.present = true;
                Effect::Send(ControlMessage::new(msg.id, ControlEvent::PortReady, 1))
            }
            _ if !port.present => Effect::Ignored(msg),
            ControlEvent::DeviceRemove => {
                *port = PortState::ABSENT;
                Effect::Removed(msg.id)
            }
            ControlEvent::ConsolePort => {
                port.console = true;
                Effect::None
            }
            ControlEvent::PortName => {
                // QEMU sends the name with its C string terminator.
                let payload = payload.split(|&b| b == 0).next().unwrap_or(&[]);
                let len = payload.len().min(MAX_NAME_LEN);
                let (name, _) = payload.split_at(len);
                if let Some(dst) = port.name.get_mut(..len) {
                    dst.copy_from_slice(name);
                }
                port.name_len = u8::try_from(len).unwrap_or(0);
                Effect::None
            }
            ControlEvent::PortOpen => {
                let connected = msg.value != 0;
                if port.host_connected == connected {
                    return Effect::None;
                }
                port.host_connected = connected;
                Effect::Host {
                    id: msg.id,
                    connected,
                }
            }
            ControlEvent::Resize => Effect::None,
            ControlEvent::DeviceReady | ControlEvent::PortReady | ControlEvent::Unknown(_) => {
                Effect::Ignored(msg)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(id: u32, event: ControlEvent, value: u16) -> ControlMessage {
        ControlMessage::new(id, event, value)
    }

    /// What QEMU sends for `-device virtconsole` (port 0) and two
    /// virtserialports, after DEVICE_READY and each PORT_READY.
    #[test]
    fn qemu_boot_sequence() {
        let mut t = PortTable::<4>::new();
        for id in 0..3 {
            assert_eq!(
                t.apply(msg(id, ControlEvent::DeviceAdd, 1), b""),
                Effect::Send(msg(id, ControlEvent::PortReady, 1))
            );
        }
        assert_eq!(
            t.apply(msg(0, ControlEvent::ConsolePort, 1), b""),
            Effect::None
        );
        t.apply(msg(1, ControlEvent::PortName, 1), b"org.example.other");
        // QEMU terminates names with a NUL.
        t.apply(
            msg(2, ControlEvent::PortName, 1),
            b"org.qemu.guest_agent.0\0",
        );
        assert_eq!(t.find("org.qemu.guest_agent.0"), Some(2));
        assert_eq!(t.find("org.example.other"), Some(1));
        assert_eq!(t.find("org.qemu.guest_agent"), None);
        assert_eq!(t.find(""), Some(0), "port 0 has no name");
        assert!(t.get(0).unwrap().is_console());
        assert!(!t.get(2).unwrap().is_console());
        assert_eq!(t.iter().count(), 3);
        assert!(!t.get(3).unwrap().is_present());
        assert!(t.get(4).is_none());
    }

    #[test]
    fn host_open_close_are_edges() {
        let mut t = PortTable::<2>::new();
        t.apply(msg(1, ControlEvent::DeviceAdd, 1), b"");
        let open = msg(1, ControlEvent::PortOpen, 1);
        let close = msg(1, ControlEvent::PortOpen, 0);
        assert_eq!(t.apply(close, b""), Effect::None, "already closed");
        assert_eq!(
            t.apply(open, b""),
            Effect::Host {
                id: 1,
                connected: true
            }
        );
        assert!(t.get(1).unwrap().is_host_connected());
        assert_eq!(t.apply(open, b""), Effect::None);
        assert_eq!(
            t.apply(close, b""),
            Effect::Host {
                id: 1,
                connected: false
            }
        );
    }

    #[test]
    fn remove_and_readd_forget_the_port() {
        let mut t = PortTable::<2>::new();
        t.apply(msg(1, ControlEvent::DeviceAdd, 1), b"");
        t.apply(msg(1, ControlEvent::PortName, 1), b"a");
        t.apply(msg(1, ControlEvent::PortOpen, 1), b"");
        assert_eq!(
            t.apply(msg(1, ControlEvent::DeviceRemove, 1), b""),
            Effect::Removed(1)
        );
        assert_eq!(t.find("a"), None);
        // Messages about absent ports are ignored.
        let name = msg(1, ControlEvent::PortName, 1);
        assert_eq!(t.apply(name, b"a"), Effect::Ignored(name));
        t.apply(msg(1, ControlEvent::DeviceAdd, 1), b"");
        let state = t.get(1).unwrap();
        assert!(state.is_present() && !state.is_host_connected() && state.name().is_empty());
    }

    #[test]
    fn out_of_range_unknown_and_long_names() {
        let mut t = PortTable::<2>::new();
        let far = msg(7, ControlEvent::DeviceAdd, 1);
        assert_eq!(t.apply(far, b""), Effect::Ignored(far));
        let huge = msg(u32::MAX, ControlEvent::PortOpen, 1);
        assert_eq!(t.apply(huge, b""), Effect::Ignored(huge));
        t.apply(msg(0, ControlEvent::DeviceAdd, 1), b"");
        let odd = msg(0, ControlEvent::Unknown(99), 0);
        assert_eq!(t.apply(odd, b""), Effect::Ignored(odd));
        let resize = msg(0, ControlEvent::Resize, 0);
        assert_eq!(t.apply(resize, b"\x18\x00\x50\x00"), Effect::None);
        let long = [b'x'; 200];
        t.apply(msg(0, ControlEvent::PortName, 1), &long);
        assert_eq!(t.get(0).unwrap().name(), &long[..MAX_NAME_LEN]);
    }

    #[test]
    fn single_port_fallback() {
        let t = PortTable::<1>::single_port();
        let port = t.get(0).unwrap();
        assert!(port.is_present() && port.is_host_connected() && port.is_console());
        assert_eq!(t.iter().count(), 1);
        assert!(PortTable::<0>::single_port().iter().next().is_none());
    }
}
